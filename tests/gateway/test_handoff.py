"""Human handoff through the gateway: the concierge bot transfers on "human"; agents list,
take, answer and release conversations through the API and hear the queue live on
``/agent-ws/{bot}``; the user is on the web channel (its WebSocket or REST) or on Telegram
(the fake Bot API on 127.0.0.1), and the bot's generic webhook hears ``handoff`` events.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.client import ClientWebSocketResponse
from aiohttp.test_utils import TestClient

from config.settings import Settings
from gateway.app import create_app
from gateway.keys import STORES
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.gateway_harness import (
    eventually,
    telegram_rows,
    tg_post,
    tg_texts,
    tg_update,
    write_bot,
)
from tests.channels.test_generic import SECRET as GENERIC_SECRET
from tests.channels.test_generic import Receiver
from tests.databases import database_fixture
from tests.fake_servers import fake_server
from tests.gateway.credentials import bearer, hs256_token
from tests.gateway.test_openapi import check, response_schema
from tests.gateway.test_proactive import AUTH
from tests.offline_network import offline_network  # noqa: F401  (autouse: no real network)

Client = TestClient  # type: ignore[type-arg]
TG_SECRET = "concierge_webhook_secret-1"
CONCIERGE = (Path(__file__).resolve().parent.parent / "bots" / "concierge.gbai").joinpath(
    "concierge.gbdialog", "start.bas"
)
GREETING = "Hello! I am the concierge. Say human to talk to a person."
GRACE = bearer(hs256_token(sub="grace", roles=["agent"], name="Grace", bots=["concierge"]))
ALAN = bearer(hs256_token(sub="alan", roles=["agent"], name="Alan"))  # every bot's agent
APP = bearer(hs256_token(roles=["app"]))
API = "/api/v1/bots/{bot}/handoffs"

telegram = fake_server(FakeBotApi)
receiver = fake_server(Receiver)
database = database_fixture("botserver_handoff")


@pytest.fixture
def bots(tmp_path: Path, telegram: FakeBotApi, receiver: Receiver) -> Path:
    folder = tmp_path / "bots"
    dialog = CONCIERGE.read_text()
    write_bot(
        folder,
        "concierge",
        {
            "crm-enabled": "true",
            **telegram_rows(telegram, TG_SECRET),
            "webhook-secret": GENERIC_SECRET,
            "webhook-callback-url": receiver.url,
            "webhook-allow-private": "true",
        },
        dialog,
    )
    # A bot whose agents are quick to give up: 6 s of silence returns the conversation.
    write_bot(
        folder,
        "hasty",
        {
            "crm-enabled": "true",
            "queue-timeout-minutes": "0.1",
            "queue-timeout-message": "Nobody answered in time; the assistant is back.",
        },
        dialog,
    )
    return folder


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str, bots: Path, tmp_path: Path, aiohttp_client
) -> Client:
    settings = Settings(
        bots_dir=bots,
        data_dir=tmp_path,
        database_url=database,
        max_body_bytes=64 * 1024,
        handoff_sweep_interval=0.2,
    )
    return await aiohttp_client(create_app(settings, auth=AUTH))


# -- helpers ----------------------------------------------------------------------------------


async def receive(ws: ClientWebSocketResponse, within: float = 15.0) -> dict[str, Any]:
    frame: dict[str, Any] = await ws.receive_json(timeout=within)
    return frame


async def until_frame(ws: ClientWebSocketResponse, **match: Any) -> dict[str, Any]:
    """The next frame with these fields (earlier frames are skipped)."""
    while True:
        frame = await receive(ws)
        if all(frame.get(k) == v for k, v in match.items()):
            return frame


async def turn(ws: ClientWebSocketResponse, text: str) -> list[dict[str, Any]]:
    """One user message on the web channel's socket: the frames up to its ``done``."""
    await ws.send_json({"type": "message", "text": text})
    frames = []
    while True:
        frame = await receive(ws)
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return frames


def texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["text"] for f in frames if f["type"] == "message"]


async def agent_feed(client: Client, agent: dict[str, str], bot: str = "concierge") -> Any:
    ws = await client.ws_connect(f"/agent-ws/{bot}")
    await ws.send_json({"type": "auth", "token": agent["Authorization"].split()[1]})
    ready = await receive(ws)
    assert ready["type"] == "ready", ready
    queue = await receive(ws)
    assert queue["type"] == "queue", queue
    return ws


async def call(
    client: Client, method: str, path: str, agent: dict[str, str], **body: Any
) -> tuple[int, Any]:
    resp = await client.request(method, path, json=body or None, headers=agent)
    return resp.status, await resp.json()


async def web_user(client: Client) -> tuple[ClientWebSocketResponse, str]:
    """A web user who asked for a person: its socket and session."""
    user = f"web-{uuid.uuid4().hex[:8]}"
    ws = await client.ws_connect("/ws/concierge", headers=APP)
    await ws.send_json({"type": "auth", "user_id": user})
    assert (await receive(ws))["type"] == "ready"
    assert texts(await turn(ws, "hi")) == [GREETING]
    frames = await turn(ws, "human")
    assert texts(frames) == ["A person will be with you shortly. You are number 1 in line."]
    return ws, frames[-1]["session_id"]


# -- the web channel --------------------------------------------------------------------------


async def test_an_agent_takes_answers_and_releases_a_web_conversation(
    client: Client, receiver: Receiver
) -> None:
    feed = await agent_feed(client, GRACE)
    ws, session_id = await web_user(client)
    transferred = await until_frame(feed, type="handoff", action="transferred")
    assert transferred["handoff"]["session_id"] == session_id
    check(
        "/components/schemas/AgentWsHandoffFrame",
        transferred,
    )

    status, listed = await call(client, "GET", API.format(bot="concierge"), GRACE)
    assert status == 200
    check(response_schema(API, "get", 200), listed)
    [waiting] = listed["handoffs"]
    assert (waiting["session_id"], waiting["status"], waiting["channel"]) == (
        session_id,
        "waiting",
        "web",
    )
    assert (waiting["department"], waiting["priority"], waiting["reason"]) == (
        "support",
        "high",
        "asked for a person",
    )

    take = f"{API}/{{session_id}}/take"
    status, taken = await call(
        client, "POST", take.format(bot="concierge", session_id=session_id), GRACE
    )
    assert status == 200 and taken["taken"] is True
    check(response_schema(take, "post", 200), taken)
    assert taken["handoff"]["agent"] == {"id": "jwt:grace", "name": "Grace"}

    # The user writes: no reply, and the agent sees it live.
    frames = await turn(ws, "are you a person?")
    assert [f["type"] for f in frames] == ["done"]
    heard = await until_frame(feed, type="message", role="user")
    assert (heard["session_id"], heard["text"]) == (session_id, "are you a person?")
    check("/components/schemas/AgentWsMessageFrame", heard)

    say = f"{API}/{{session_id}}/messages"
    status, said = await call(
        client,
        "POST",
        say.format(bot="concierge", session_id=session_id),
        GRACE,
        text="Yes! I am **Grace**. How can I help?",
    )
    assert status == 201
    check(response_schema(say, "post", 201), said)
    pushed = await until_frame(ws, type="message")
    assert pushed == {
        "type": "message",
        "text": "Yes! I am **Grace**. How can I help?",
        "suggestions": [],
        "from": "agent",
        "agent": "Grace",
    }
    check("/components/schemas/WsReplyFrame", pushed)

    release = f"{API}/{{session_id}}/release"
    status, released = await call(
        client, "POST", release.format(bot="concierge", session_id=session_id), GRACE
    )
    assert status == 200 and released["handoff"]["status"] == "resolved"
    check(response_schema(release, "post", 200), released)
    assert released["handoff"]["release_mode"] == "continue"
    assert texts(await turn(ws, "thanks")) == ["Welcome back! You said: thanks"]

    # The history keeps it all, the person's message as the agent's.
    resp = await client.get(f"/api/v1/bots/concierge/sessions/{session_id}/messages", headers=GRACE)
    history = [(m["role"], m["text"]) for m in (await resp.json())["messages"]]
    assert history[-4:] == [
        ("user", "are you a person?"),
        ("agent", "Yes! I am **Grace**. How can I help?"),
        ("user", "thanks"),
        ("assistant", "Welcome back! You said: thanks"),
    ]

    # The bot's generic webhook heard each step, signed.
    def handoff_events_() -> list[dict[str, Any]]:
        return [e for e in receiver.delivered() if e["event"] == "handoff"]

    await eventually(lambda: len(handoff_events_()) >= 3)
    handoff_events = handoff_events_()
    assert [e["action"] for e in handoff_events] == ["transferred", "taken", "released"]
    assert all(e["session_id"] == session_id and e["channel"] == "web" for e in handoff_events)
    assert handoff_events[1]["agent"] == {"id": "jwt:grace", "name": "Grace"}
    assert all(r["signed"] for r in receiver.received)
    await ws.close()
    await feed.close()


async def test_the_bot_stays_silent_through_twenty_messages_while_a_person_holds_it(
    client: Client,
) -> None:
    user = f"rest-{uuid.uuid4().hex[:8]}"
    messages = "/api/v1/bots/concierge/messages"

    async def post(text: str) -> dict[str, Any]:
        resp = await client.post(messages, json={"user_id": user, "text": text}, headers=APP)
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer

    await post("hi")
    session_id = (await post("human"))["session_id"]
    feed = await agent_feed(client, ALAN)
    status, _ = await call(
        client, "POST", f"/api/v1/bots/concierge/handoffs/{session_id}/take", ALAN
    )
    assert status == 200
    for n in range(20):
        answer = await post(f"message {n}")
        assert answer == {"session_id": session_id, "replies": []}
    heard = []
    while len(heard) < 20:
        frame = await receive(feed)
        if frame["type"] == "message" and frame["role"] == "user":
            heard.append(frame["text"])
    assert heard == [f"message {n}" for n in range(20)]
    resp = await client.get(f"/api/v1/bots/concierge/sessions/{session_id}/messages", headers=ALAN)
    history = [(m["role"], m["text"]) for m in (await resp.json())["messages"]]
    assert history[-20:] == [("user", f"message {n}") for n in range(20)]
    # Nothing but the user's messages since the transfer: no reply was even recorded.
    outbox = await client.app[STORES].pool.fetchval(
        "SELECT count(*) FROM outbox WHERE bot_id = 'concierge' AND conversation = $1"
        " AND channel = 'web' AND message->>'text' LIKE 'You said%'",
        user,
    )
    assert outbox == 0
    await call(client, "POST", f"/api/v1/bots/concierge/handoffs/{session_id}/release", ALAN)
    assert (await post("back"))["replies"][0]["text"] == "Welcome back! You said: back"
    await feed.close()


# -- Telegram -------------------------------------------------------------------------------


async def tg(client: Client, update_id: int, text: str, chat: int) -> None:
    update = tg_update(update_id, text, chat=chat)
    assert await tg_post(client, update, TG_SECRET, bot="concierge") == 200


async def test_the_agents_reply_reaches_the_telegram_chat(
    client: Client, telegram: FakeBotApi
) -> None:
    chat = 4343
    await tg(client, 1, "hi", chat)
    await eventually(lambda: tg_texts(telegram, chat) == [GREETING])
    await tg(client, 2, "human", chat)
    await eventually(lambda: len(tg_texts(telegram, chat)) == 2)
    [listed] = (await call(client, "GET", "/api/v1/bots/concierge/handoffs", GRACE))[1]["handoffs"]
    assert (listed["channel"], listed["user_id"]) == ("telegram", str(chat))
    session_id = listed["session_id"]
    base = f"/api/v1/bots/concierge/handoffs/{session_id}"
    assert (await call(client, "POST", f"{base}/take", GRACE))[0] == 200

    await tg(client, 3, "my parcel never came", chat)
    status, _ = await call(client, "POST", f"{base}/messages", GRACE, text="Sorry! Let me look.")
    assert status == 201
    await eventually(lambda: "Sorry! Let me look." in tg_texts(telegram, chat))
    status, _ = await call(client, "POST", f"{base}/release", GRACE, message="It ships today. Bye!")
    assert status == 200
    await eventually(lambda: "It ships today. Bye!" in tg_texts(telegram, chat))
    await tg(client, 4, "great", chat)
    await eventually(lambda: "Welcome back! You said: great" in tg_texts(telegram, chat))
    assert tg_texts(telegram, chat) == [
        GREETING,
        "A person will be with you shortly. You are number 1 in line.",
        "Sorry! Let me look.",
        "It ships today. Bye!",
        "Welcome back! You said: great",
    ]


# -- refusals ---------------------------------------------------------------------------------


async def test_another_bots_conversation_is_refused_with_a_json_error_and_left_alone(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    ws, session_id = await web_user(client)
    caplog.set_level(logging.INFO, logger="gateway.errors")
    # An agent of every bot, naming the concierge's conversation under another bot.
    for method, action, body in (
        ("POST", "take", {}),
        ("POST", "messages", {"text": "hello"}),
        ("POST", "release", {}),
        ("GET", "", {}),
    ):
        path = f"/api/v1/bots/hasty/handoffs/{session_id}" + (f"/{action}" if action else "")
        status, answer = await call(client, method, path, ALAN, **body)
        assert (status, answer["error"]) == (404, "unknown_handoff"), (path, answer)
        assert set(answer) == {"error", "message"}
    assert "refused POST /api/v1/bots/hasty/handoffs" in caplog.text
    # The concierge's agent on another bot: 403; a user or an app: 403; nobody: 401.
    status, answer = await call(client, "GET", "/api/v1/bots/hasty/handoffs", GRACE)
    assert (status, answer["error"]) == (403, "forbidden")
    for who in (APP, bearer(hs256_token(sub="web-1"))):
        status, answer = await call(
            client, "POST", f"{API.format(bot='concierge')}/{session_id}/take", who
        )
        assert (status, answer["error"]) == (403, "forbidden")
    resp = await client.get(API.format(bot="concierge"))
    assert resp.status == 401
    # Nothing changed: still waiting, nobody holds it, the bot still silent.
    status, answer = await call(client, "GET", f"{API.format(bot='concierge')}/{session_id}", ALAN)
    assert (answer["handoff"]["status"], answer["handoff"]["agent"]) == ("waiting", None)
    assert [f["type"] for f in await turn(ws, "anyone?")] == ["done"]
    # Malformed bodies: a 400 with the JSON error.
    status, answer = await call(
        client, "POST", f"{API.format(bot='concierge')}/{session_id}/release", ALAN, mode="later"
    )
    assert (status, answer["error"]) == (400, "bad_request")
    status, answer = await call(
        client, "POST", f"{API.format(bot='concierge')}/{session_id}/messages", ALAN, text=" "
    )
    assert (status, answer["error"]) == (400, "bad_request")
    status, answer = await call(
        client, "POST", f"{API.format(bot='concierge')}/{session_id}/messages", ALAN, text="hi"
    )
    assert (status, answer["error"]) == (409, "not_taken")
    check(response_schema(f"{API}/{{session_id}}/messages", "post", 409), answer)
    await ws.close()


async def test_the_agents_feed_refuses_who_is_not_an_agent(client: Client) -> None:
    for token, code in ((APP, "forbidden"), ({"Authorization": "Bearer nonsense"}, "unauthorized")):
        ws = await client.ws_connect("/agent-ws/concierge")
        await ws.send_json({"type": "auth", "token": token["Authorization"].split()[1]})
        frame = await receive(ws)
        assert (frame["type"], frame["error"]) == ("error", code)
        closing = await ws.receive(timeout=10)
        assert closing.type == WSMsgType.CLOSE and closing.data == 1008
    resp = await client.get("/agent-ws/concierge?token=abc")
    assert resp.status == 400


async def test_two_agents_taking_at_once_one_wins_the_other_gets_409(client: Client) -> None:
    ws, session_id = await web_user(client)
    path = f"/api/v1/bots/concierge/handoffs/{session_id}/take"
    answers = await asyncio.gather(*(call(client, "POST", path, who) for who in (GRACE, ALAN) * 5))
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(409) == 5 and statuses.count(200) == 5
    winners = {a["handoff"]["agent"]["id"] for s, a in answers if s == 200}
    assert len(winners) == 1
    assert sum(1 for s, a in answers if s == 200 and a["taken"]) == 1
    conflict = next(a for s, a in answers if s == 409)
    assert conflict["error"] == "held_by_another"
    check(response_schema(f"{API}/{{session_id}}/take", "post", 409), conflict)
    await ws.close()


# -- the queue timeout ------------------------------------------------------------------------


async def test_an_abandoned_conversation_returns_to_the_bot_with_a_message(client: Client) -> None:
    user = f"web-{uuid.uuid4().hex[:8]}"
    feed = await agent_feed(client, ALAN, bot="hasty")
    ws = await client.ws_connect("/ws/hasty", headers=APP)
    await ws.send_json({"type": "auth", "user_id": user})
    assert (await receive(ws))["type"] == "ready"
    await turn(ws, "hi")
    session_id = (await turn(ws, "human"))[-1]["session_id"]
    base = f"/api/v1/bots/hasty/handoffs/{session_id}"
    assert (await call(client, "POST", f"{base}/take", ALAN))[0] == 200
    # The agent answers once, then says nothing: 6 s later the bot has it back.
    assert (await call(client, "POST", f"{base}/messages", ALAN, text="One moment."))[0] == 201
    assert (await until_frame(ws, type="message"))["text"] == "One moment."
    notice = await until_frame(ws, type="message")
    assert notice == {
        "type": "message",
        "text": "Nobody answered in time; the assistant is back.",
        "suggestions": [],
        "from": "bot",
    }
    abandoned = await until_frame(feed, type="handoff", action="abandoned")
    assert abandoned["handoff"]["status"] == "abandoned"
    status, answer = await call(client, "GET", base, ALAN)
    assert (status, answer["handoff"]["status"]) == (200, "abandoned")
    assert (await call(client, "POST", f"{base}/messages", ALAN, text="late"))[0] == 404
    assert texts(await turn(ws, "ok")) == ["Welcome back! You said: ok"]
    await ws.close()
    await feed.close()


# -- two instances ----------------------------------------------------------------------------


async def test_on_two_instances_the_agent_on_one_reaches_the_user_on_the_other(  # type: ignore[no-untyped-def]
    database: str, bots: Path, tmp_path: Path, aiohttp_client
) -> None:
    """Instances sharing PostgreSQL and Redis: the user's socket is on one, the agent's
    console and API calls on the other; each hears the other live."""

    def instance(name: str) -> Settings:
        return Settings(
            bots_dir=bots,
            data_dir=tmp_path / name,
            database_url=database,
            redis_url="redis://127.0.0.1:6379/0",
            max_body_bytes=64 * 1024,
            handoff_sweep_interval=0.2,
        )

    first = await aiohttp_client(create_app(instance("first"), auth=AUTH))
    second = await aiohttp_client(create_app(instance("second"), auth=AUTH))
    feed = await agent_feed(second, GRACE)
    ws, session_id = await web_user(first)
    assert (await until_frame(feed, type="handoff", action="transferred"))["handoff"][
        "session_id"
    ] == session_id
    base = f"/api/v1/bots/concierge/handoffs/{session_id}"
    assert (await call(second, "POST", f"{base}/take", GRACE))[0] == 200
    assert [f["type"] for f in await turn(ws, "hello from the first")] == ["done"]
    heard = await until_frame(feed, type="message", role="user")
    assert heard["text"] == "hello from the first"
    assert (await call(second, "POST", f"{base}/messages", GRACE, text="hi from the second"))[
        0
    ] == 201
    pushed = await until_frame(ws, type="message")
    assert (pushed["text"], pushed["from"]) == ("hi from the second", "agent")
    assert (await call(first, "POST", f"{base}/release", GRACE))[0] == 200
    assert texts(await turn(ws, "bye")) == ["Welcome back! You said: bye"]
    await ws.close()
    await feed.close()
