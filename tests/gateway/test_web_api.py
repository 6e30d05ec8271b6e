"""The web channel's HTTP API, spoken to as a client would."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from tests.gateway.credentials import ADMIN_TOKEN, bearer

URL = "/api/v1/bots/{bot}/messages"


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def say(
    client: TestClient, text: str, user: str, session_id: str | None = None, bot: str = "default"
):  # type: ignore[no-untyped-def]
    resp = await client.post(
        URL.format(bot=bot), json={"user_id": user, "text": text, "session_id": session_id}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_default_bot_conversation(client: TestClient) -> None:
    user = new_user()
    first = await say(client, "hi", user)
    assert [r["text"] for r in first["replies"]] == [
        "Hello! I am the botserver assistant. What is your name?"
    ]
    session = first["session_id"]

    second = await say(client, "ada lovelace", user, session)
    assert second["session_id"] == session
    assert [r["text"] for r in second["replies"]] == [
        "Nice to meet you, Ada Lovelace!",
        "What would you like to do next?",
    ]
    assert second["replies"][0]["suggestions"] == []
    assert second["replies"][1]["suggestions"] == [
        "What can you do?",
        "Do you remember my name?",
        "Goodbye",
        "Ask about botserver",
    ]

    # A tapped suggestion arrives as its label; the dialog's menu gets the key.
    third = await say(client, "Do you remember my name?", user, session)
    assert [r["text"] for r in third["replies"]] == [
        "Of course: your name is Ada Lovelace.",
        "What would you like to do next?",
    ]
    assert third["replies"][0]["suggestions"] == []
    assert len(third["replies"][1]["suggestions"]) == 4

    bye = await say(client, "bye", user, session)
    assert [r["text"] for r in bye["replies"]] == ["Goodbye, Ada Lovelace! Come back any time."]
    assert bye["replies"][0]["suggestions"] == []

    # The dialog has ended and no AI model is configured: an honest fallback.
    after = await say(client, "anything else?", user, session)
    assert [r["text"] for r in after["replies"]] == ["Sorry, I have no answer for that."]


async def test_invalid_hear_input_is_asked_again(client: TestClient) -> None:
    user = new_user()
    session = (await say(client, "hi", user))["session_id"]
    retry = await say(client, "12345", user, session)
    assert len(retry["replies"]) == 1
    assert "name" in retry["replies"][0]["text"].lower()
    ok = await say(client, "grace hopper", user, session)
    assert ok["replies"][0]["text"] == "Nice to meet you, Grace Hopper!"


async def test_without_session_id_the_users_active_session_continues(client: TestClient) -> None:
    user = new_user()
    first = await say(client, "hi", user)
    second = await say(client, "alan turing", user)
    assert second["session_id"] == first["session_id"]
    assert second["replies"][0]["text"] == "Nice to meet you, Alan Turing!"


async def test_history_is_kept_in_order(client: TestClient) -> None:
    user = new_user()
    session = (await say(client, "hi", user))["session_id"]
    await say(client, "ada", user, session)
    resp = await client.get(
        f"/api/v1/bots/default/sessions/{session}/messages", params={"user_id": user}
    )
    assert resp.status == 200
    body = await resp.json()
    assert [(m["role"], m["text"]) for m in body["messages"]] == [
        ("user", "hi"),
        ("assistant", "Hello! I am the botserver assistant. What is your name?"),
        ("user", "ada"),
        ("assistant", "Nice to meet you, Ada!"),
        ("assistant", "What would you like to do next?"),
    ]
    other = await client.get(
        f"/api/v1/bots/default/sessions/{session}/messages", params={"user_id": "someone"}
    )
    assert other.status == 404


async def test_history_is_caught_up_after_a_cursor(client: TestClient) -> None:
    user = new_user()
    session = (await say(client, "hi", user))["session_id"]
    url = f"/api/v1/bots/default/sessions/{session}/messages"

    async def page(**params: str) -> dict[str, Any]:
        resp = await client.get(url, params={"user_id": user, **params})
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body

    first = await page()
    assert [m["text"] for m in first["messages"]] == [
        "hi",
        "Hello! I am the botserver assistant. What is your name?",
    ]
    cursor = first["next"]
    assert cursor == first["messages"][-1]["id"]
    caught_up = await page(after=cursor)
    assert (caught_up["messages"], caught_up["next"]) == ([], cursor)

    await say(client, "ada", user, session)
    later = await page(after=cursor)
    assert [(m["role"], m["text"]) for m in later["messages"]] == [
        ("user", "ada"),
        ("assistant", "Nice to meet you, Ada!"),
        ("assistant", "What would you like to do next?"),
    ]
    # Oldest first, a page at a time: the limit counts from the cursor, not from the end.
    one = await page(after=cursor, limit="1")
    assert [m["text"] for m in one["messages"]] == ["ada"]
    two = await page(after=one["next"], limit="1")
    assert [m["text"] for m in two["messages"]] == ["Nice to meet you, Ada!"]
    for bad in ("x", "-1", "1" * 25):
        resp = await client.get(url, params={"user_id": user, "after": bad})
        assert resp.status == 400, bad


async def test_event_stream_ends_with_done(client: TestClient) -> None:
    user = new_user()
    resp = await client.post(
        URL.format(bot="default"),
        json={"user_id": user, "text": "hi"},
        headers={"Accept": "text/event-stream"},
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    raw = (await resp.read()).decode()
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], orjson.loads(lines["data"])))
    assert [e for e, _ in events] == ["message", "done"]
    assert events[0][1]["text"] == "Hello! I am the botserver assistant. What is your name?"
    assert events[1][1]["session_id"]
    assert events[1][1]["replies"] == [events[0][1]]


async def test_event_stream_refused_turn_is_a_plain_json_error(client: TestClient) -> None:
    resp = await client.post(
        URL.format(bot="default"),
        json={"user_id": new_user(), "text": "hi", "session_id": str(uuid.uuid4())},
        headers={"Accept": "text/event-stream"},
    )
    assert resp.status == 404
    assert (await resp.json())["error"] == "unknown_session"


async def test_runtime_error_ends_dialog_politely(client: TestClient) -> None:
    user = new_user()
    first = await say(client, "start", user, bot="crash")
    assert first["replies"][0]["text"] == "Give me a number."
    session = first["session_id"]
    failed = await say(client, "0", user, session, bot="crash")
    assert [r["text"] for r in failed["replies"]] == [
        "Sorry, something went wrong in this conversation. Please start again."
    ]
    # The dialog ended, but not at a dead end: the next message starts it again.
    after = await say(client, "5", user, session, bot="crash")
    assert [r["text"] for r in after["replies"]] == ["Give me a number."]


async def test_bot_without_dialog_uses_its_configured_fallback(client: TestClient) -> None:
    body = await say(client, "hello", new_user(), bot="nodialog")
    assert [r["text"] for r in body["replies"]] == ["I only know how to say this."]


async def test_health_and_ready(client: TestClient) -> None:
    assert (await client.get("/health")).status == 200
    resp = await client.get("/ready")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    assert body["checks"] and all(body["checks"].values())


async def test_reload_reports_dialog_errors(client: TestClient) -> None:
    admin = bearer(ADMIN_TOKEN)
    resp = await client.post("/api/v1/bots/broken/reload", headers=admin)
    assert resp.status == 200
    body = await resp.json()
    assert body["dialogs"] == []
    assert len(body["errors"]) == 1
    assert body["errors"][0].split(":")[0].endswith("start.bas")

    ok = await client.post("/api/v1/bots/default/reload", headers=admin)
    assert (await ok.json())["dialogs"] == ["start"]
    missing = await client.post("/api/v1/bots/nope/reload", headers=admin)
    assert missing.status == 404
    traversal = await client.post("/api/v1/bots/..%2F..%2Fetc/reload", headers=admin)
    assert traversal.status == 404


async def test_a_message_id_is_its_users_own(client: TestClient) -> None:
    # Another user sending the same id runs a turn of its own and never sees the first
    # user's replies.
    first, second = new_user(), new_user()
    url = URL.format(bot="default")
    mine = await client.post(url, json={"user_id": first, "text": "hi", "message_id": "m-1"})
    theirs = await client.post(url, json={"user_id": second, "text": "help", "message_id": "m-1"})
    assert mine.status == theirs.status == 200
    mine_body, theirs_body = await mine.json(), await theirs.json()
    assert mine_body["session_id"] != theirs_body["session_id"]
    history = await client.get(
        f"/api/v1/bots/default/sessions/{theirs_body['session_id']}/messages",
        params={"user_id": second},
    )
    first_text = next(m["text"] for m in (await history.json())["messages"])
    assert first_text == "help"
    too_long = await client.post(url, json={"user_id": first, "text": "x", "message_id": "9" * 256})
    assert too_long.status == 400


async def test_a_message_id_sent_again_runs_no_second_turn(client: TestClient) -> None:
    user = new_user()
    body = {"user_id": user, "text": "hi", "message_id": f"{user}-1"}
    answers = []
    for _ in range(3):  # a client retrying after lost answers
        resp = await client.post(URL.format(bot="default"), json=body)
        assert resp.status == 200, await resp.text()
        answers.append(await resp.json())
    assert answers[0] == answers[1] == answers[2]
    assert [r["text"] for r in answers[0]["replies"]] == [
        "Hello! I am the botserver assistant. What is your name?"
    ]
    session = answers[0]["session_id"]
    history = await client.get(
        f"/api/v1/bots/default/sessions/{session}/messages", params={"user_id": user}
    )
    assert [m["text"] for m in (await history.json())["messages"]] == [
        "hi",
        "Hello! I am the botserver assistant. What is your name?",
    ]
    # The same id sent concurrently: one turn, every request answered with its replies.
    body = {"user_id": user, "text": "Ada", "message_id": f"{user}-2"}
    responses = await asyncio.gather(
        *(client.post(URL.format(bot="default"), json=body) for _ in range(3))
    )
    texts = [[r["text"] for r in (await resp.json())["replies"]] for resp in responses]
    assert all(t == ["Nice to meet you, Ada!", "What would you like to do next?"] for t in texts)
    history = await client.get(
        f"/api/v1/bots/default/sessions/{session}/messages", params={"user_id": user}
    )
    assert [m["text"] for m in (await history.json())["messages"]].count("Ada") == 1
