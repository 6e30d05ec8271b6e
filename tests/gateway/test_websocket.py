"""The WebSocket route: JSON frames both ways, a session resumable by its id.

The ``client`` fixture is an ``app`` (a JWT in the upgrade's Authorization
header), so the first frame, ``auth``, carries no token here.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import WSMsgType
from aiohttp.client import ClientWebSocketResponse
from aiohttp.test_utils import TestClient


async def hello(ws: ClientWebSocketResponse, **fields: Any) -> dict[str, Any]:
    """Send the auth frame; the server's ``ready`` frame."""
    await ws.send_json({"type": "auth", **fields})
    ready = await ws.receive_json(timeout=10)
    assert ready["type"] == "ready", ready
    return ready


async def frames_until_done(ws: ClientWebSocketResponse) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while True:
        frame = await ws.receive_json(timeout=10)
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return frames


async def test_conversation_over_websocket(client: TestClient) -> None:
    user = f"ws-{uuid.uuid4().hex[:8]}"
    async with client.ws_connect("/ws/default") as ws:
        await hello(ws)
        await ws.send_json({"type": "message", "text": "hi", "user_id": user})
        frames = await frames_until_done(ws)
        assert [f["type"] for f in frames] == ["message", "done"]
        assert frames[0]["text"] == "Hello! I am the botserver assistant. What is your name?"
        session = frames[-1]["session_id"]

        await ws.send_json(
            {"type": "message", "text": "ada lovelace"}
        )  # user and session carried over
        frames = await frames_until_done(ws)
        assert [f["type"] for f in frames] == ["message", "message", "done"]
        assert frames[0]["text"] == "Nice to meet you, Ada Lovelace!"
        assert frames[1]["suggestions"][0] == {"key": "help", "label": "What can you do?"}
        assert frames[-1]["session_id"] == session

    # A new connection resumes the session by id, with the dialog still waiting.
    async with client.ws_connect("/ws/default") as ws:
        await hello(ws, user_id=user, session_id=session)
        await ws.send_json({"type": "message", "text": "name"})
        frames = await frames_until_done(ws)
        assert frames[0]["text"] == "Of course: your name is Ada Lovelace."
        assert frames[-1] == {"type": "done", "session_id": session}


async def test_bad_frames_get_error_frames_and_the_socket_goes_on(client: TestClient) -> None:
    user = f"ws-{uuid.uuid4().hex[:8]}"
    async with client.ws_connect("/ws/default") as ws:
        await hello(ws, user_id=user)
        await ws.send_str("this is not json")
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "error" and frame["error"] == "bad_request"

        await ws.send_json({"type": "subscribe"})
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "error" and "unknown frame type" in frame["message"]

        await ws.send_json({"type": "message", "text": 42})
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "error" and "'text'" in frame["message"]

        await ws.send_bytes(b"\x00\x01")
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "error" and frame["error"] == "bad_frame"

        await ws.send_json({"type": "message", "text": "hi"})
        frames = await frames_until_done(ws)
        assert frames[-1]["type"] == "done"


async def test_unknown_session_on_connect(client: TestClient) -> None:
    async with client.ws_connect("/ws/default") as ws:
        await hello(ws, user_id="u1", session_id=str(uuid.uuid4()))
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "error" and frame["error"] == "unknown_session"
        # The socket stays usable: the next message starts or finds the user's own session.
        await ws.send_json({"type": "message", "text": "hi"})
        frames = await frames_until_done(ws)
        assert frames[-1]["type"] == "done"


async def test_unknown_bot_is_refused_before_upgrade(client: TestClient) -> None:
    resp = await client.get("/ws/nobody", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert resp.status == 404
    assert (await resp.json())["error"] == "unknown_bot"


async def test_frame_over_the_limit_closes_with_message_too_big(client: TestClient) -> None:
    async with client.ws_connect("/ws/default") as ws:
        await hello(ws, user_id="big")
        await ws.send_str('{"text": "' + "x" * (65 * 1024) + '"}')
        msg = await ws.receive(timeout=5)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
