"""Bad input gets a clear 4xx with a JSON error body and leaves other conversations alone."""

from __future__ import annotations

import logging
import uuid

import pytest
from aiohttp.test_utils import TestClient

URL = "/api/v1/bots/default/messages"


@pytest.mark.parametrize(
    ("body", "headers", "status", "error", "says"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "bad_request", "not valid JSON"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "bad_request", "JSON object"),
        (b'{"user_id": "u"}', {"Content-Type": "application/json"}, 400, "bad_request", "'text'"),
        (b'{"text": "hi"}', {"Content-Type": "application/json"}, 400, "bad_request", "'user_id'"),
        (
            b'{"user_id": 5, "text": "hi"}',
            {"Content-Type": "application/json"},
            400,
            "bad_request",
            "string",
        ),
        (
            b'{"user_id": "u", "text": ["hi"]}',
            {"Content-Type": "application/json"},
            400,
            "bad_request",
            "string",
        ),
        (
            b'{"user_id": "u", "text": "  "}',
            {"Content-Type": "application/json"},
            400,
            "bad_request",
            "empty",
        ),
        (
            b'{"user_id": "u", "text": "hi", "session_id": 7}',
            {"Content-Type": "application/json"},
            400,
            "bad_request",
            "session_id",
        ),
        (
            b"user_id=u&text=hi",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
            "json",
        ),
    ],
)
async def test_malformed_messages(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
    says: str,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    resp = await client.post(URL, data=body, headers=headers)
    assert resp.status == status
    payload = await resp.json()
    assert payload["error"] == error
    assert says.lower() in payload["message"].lower()
    assert any(URL in r.getMessage() for r in caplog.records), "bad input is logged"


async def test_unknown_bot(client: TestClient) -> None:
    resp = await client.post("/api/v1/bots/nobody/messages", json={"user_id": "u", "text": "hi"})
    assert resp.status == 404
    assert (await resp.json())["error"] == "unknown_bot"


@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_unknown_session(client: TestClient, session_id: str) -> None:
    resp = await client.post(URL, json={"user_id": "u", "text": "hi", "session_id": session_id})
    assert resp.status == 404
    assert (await resp.json())["error"] == "unknown_session"


async def test_someone_elses_session_is_unknown(client: TestClient) -> None:
    owner = await client.post(URL, json={"user_id": "owner", "text": "hi"})
    session = (await owner.json())["session_id"]
    intruder = await client.post(
        URL, json={"user_id": "intruder", "text": "hi", "session_id": session}
    )
    assert intruder.status == 404
    other_bot = await client.post(
        "/api/v1/bots/nodialog/messages",
        json={"user_id": "owner", "text": "hi", "session_id": session},
    )
    assert other_bot.status == 404


async def test_body_over_the_limit(client: TestClient) -> None:
    big = b'{"user_id": "u", "text": "' + b"x" * (65 * 1024) + b'"}'
    resp = await client.post(URL, data=big, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"] == "body_too_large"


async def test_unknown_route_is_json_404(client: TestClient) -> None:
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_bad_input_leaves_other_conversations_untouched(client: TestClient) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    first = await client.post(URL, json={"user_id": user, "text": "hi"})
    session = (await first.json())["session_id"]
    for bad in (b"{", b'{"user_id": 1}', b"[]"):
        assert (
            await client.post(URL, data=bad, headers={"Content-Type": "application/json"})
        ).status == 400
    resp = await client.post(URL, json={"user_id": user, "text": "ada", "session_id": session})
    assert (await resp.json())["replies"][0]["text"] == "Nice to meet you, Ada!"
