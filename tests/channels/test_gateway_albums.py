"""Albums and bursts answered as one turn, end to end: a real gateway on a real PostgreSQL,
python-telegram-bot against the fake Bot API, the Graph API's wire format against its fake.

Telegram sends an album as one update per photo, sharing a ``media_group_id``; WhatsApp
sends photos picked together as messages one after another. Each update is claimed in
the inbox before it is acknowledged; the first item's turn, run once its window is over,
carries the others: one turn, every attachment in order, one reply.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import STORES
from storage.services import Stores
from tests.channels.fake_graph import FakeGraphApi
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.gateway_harness import (
    WA_USER,
    Client,
    eventually,
    gateway_settings,
    telegram_rows,
    tg_post,
    tg_texts,
    tg_update,
    wa_media,
    wa_message,
    wa_notification,
    wa_post,
    whatsapp_rows,
    write_bot,
)
from tests.databases import database_fixture
from tests.fake_servers import fake_server

ADMIN_TOKEN = "gateway-albums-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHAT = 616161
BURST_CHAT = 626262
BURST_WINDOW = 1.0  # the chatty bot's burst-window, seconds
GREETING = "Hello from relay."

telegram = fake_server(FakeBotApi)
graph = fake_server(FakeGraphApi)
database = database_fixture("botserver_albums")


@pytest.fixture
def bots(tmp_path: Path, telegram: FakeBotApi, graph: FakeGraphApi) -> Path:
    folder = tmp_path / "bots"
    tg = telegram_rows(telegram)
    # relay: the defaults (albums within 1 s, no bursts), on Telegram and WhatsApp.
    write_bot(folder, "relay", tg | whatsapp_rows(graph))
    # chatty: the lines a user writes within a second are one message.
    write_bot(folder, "chatty", tg | {"burst-window": str(int(BURST_WINDOW * 1000))})
    return folder


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str, bots: Path, tmp_path: Path, aiohttp_client, monkeypatch: pytest.MonkeyPatch
) -> Client:
    monkeypatch.setenv("BOTSERVER_ADMIN_TOKEN", ADMIN_TOKEN)
    settings = gateway_settings(database, bots, tmp_path / "data")
    return await aiohttp_client(create_app(settings))


def album_photo(update_id: int, group: str, file_id: str, caption: str = "") -> bytes:
    """One item of a Telegram album, as the Bot API sends it: its own update, the album's
    ``media_group_id``, the caption (if any) on the first item only."""
    message: dict[str, Any] = {
        "message_id": update_id,
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ada"},
        "chat": {"id": CHAT, "first_name": "Ada", "type": "private"},
        "date": int(time.time()),
        "media_group_id": group,
        "photo": [
            {
                "file_id": f"{file_id}-s",
                "file_unique_id": f"{file_id}-s",
                "width": 90,
                "height": 60,
            },
            {"file_id": file_id, "file_unique_id": file_id, "width": 1280, "height": 853},
        ],
    }
    if caption:
        message["caption"] = caption
    return json.dumps({"update_id": update_id, "message": message}).encode()


async def user_rows(client: Client, channel: str, user: str, bot: str = "relay") -> list[Any]:
    """The user's rows of the conversation's history, through the API."""
    stores: Stores = client.server.app[STORES]
    session = await stores.conversations.find_active(bot_id=bot, channel=channel, user_id=user)
    if session is None:
        return []
    resp = await client.get(f"/api/v1/bots/{bot}/sessions/{session.id}/messages", headers=ADMIN)
    assert resp.status == 200
    return [m for m in (await resp.json())["messages"] if m["role"] == "user"]


async def inbox_rows(client: Client, bot: str, channel: str) -> list[tuple[str, str, Any]]:
    """(external id, status, the seq it was merged into) of the bot's inbox rows, in order."""
    stores: Stores = client.server.app[STORES]
    async with stores.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT external_id, status, merged_into FROM inbox"
            " WHERE bot_id = $1 AND channel = $2 ORDER BY seq",
            bot,
            channel,
        )
    return [(r[0], r[1], r[2]) for r in rows]


async def test_an_album_of_three_photos_is_one_turn_with_its_photos_in_order(
    client: Client, telegram: FakeBotApi
) -> None:
    assert await tg_post(client, tg_update(100, "hi", chat=CHAT)) == 200
    await eventually(lambda: tg_texts(telegram, CHAT) == [GREETING])
    for n in (1, 2, 3):
        telegram.add_file(f"photo-{n}", bytes([n]) * (100 * n), file_path=f"photos/{n}.jpg")
    updates = [
        album_photo(101, "13571113", "photo-1", caption="my trip"),
        album_photo(102, "13571113", "photo-2"),
        album_photo(103, "13571113", "photo-3"),
    ]
    for body in updates:  # each acknowledged once claimed, long before the window ends
        started = time.monotonic()
        assert await tg_post(client, body) == 200
        assert time.monotonic() - started < 0.5
    # Telegram delivers again (a slow acknowledgement, a restart), also all at once.
    statuses = await asyncio.gather(*(tg_post(client, body) for body in updates * 2))
    assert statuses == [200] * 6
    await eventually(lambda: len(tg_texts(telegram, CHAT)) == 2)
    await asyncio.sleep(BURST_WINDOW + 0.5)  # nothing else comes
    assert tg_texts(telegram, CHAT) == [GREETING, "You said: my trip"]
    rows = await user_rows(client, "telegram", str(CHAT))
    assert [r["text"] for r in rows] == ["hi", "my trip"]
    photos = rows[1]["attachments"]
    assert [(p["kind"], p["size"]) for p in photos] == [
        ("image", 100),
        ("image", 200),
        ("image", 300),
    ]
    assert [p.get("caption") for p in photos] == ["my trip", None, None]
    rows_in_inbox = await inbox_rows(client, "relay", "telegram")
    [first] = [r for r in rows_in_inbox if r[0] == "101"]
    assert first[1] == "done"
    assert sorted(r[1] for r in rows_in_inbox if r[0] in ("102", "103")) == ["merged"] * 2
    assert await client.server.app[STORES].inbox.status("relay", "telegram", "103") == "done"


async def test_a_burst_within_the_window_is_one_turn_and_a_line_after_it_its_own(
    client: Client, telegram: FakeBotApi
) -> None:
    assert await tg_post(client, tg_update(200, "hi", chat=BURST_CHAT), bot="chatty") == 200
    await eventually(lambda: tg_texts(telegram, BURST_CHAT) == [GREETING])
    started = time.monotonic()
    for n, line in enumerate(["I would like", "a table for two", "tonight"], start=201):
        assert await tg_post(client, tg_update(n, line, chat=BURST_CHAT), bot="chatty") == 200
    assert time.monotonic() - started < BURST_WINDOW / 2  # all three within the window
    await asyncio.sleep(BURST_WINDOW + 0.3 - (time.monotonic() - started))
    assert await tg_post(client, tg_update(204, "at eight", chat=BURST_CHAT), bot="chatty") == 200
    await eventually(lambda: len(tg_texts(telegram, BURST_CHAT)) == 3)
    await asyncio.sleep(BURST_WINDOW + 0.5)
    assert tg_texts(telegram, BURST_CHAT) == [
        GREETING,
        "You said: I would like\na table for two\ntonight",
        "You said: at eight",
    ]
    rows = await user_rows(client, "telegram", str(BURST_CHAT), "chatty")
    assert [r["text"] for r in rows] == [
        "hi",
        "I would like\na table for two\ntonight",
        "at eight",
    ]
    statuses = [status for _, status, _ in await inbox_rows(client, "chatty", "telegram")]
    assert statuses == ["done", "done", "merged", "merged", "done"]


async def test_text_is_never_held_back_on_a_bot_without_a_burst_window(
    client: Client, telegram: FakeBotApi
) -> None:
    assert await tg_post(client, tg_update(300, "hi", chat=CHAT)) == 200
    await eventually(lambda: tg_texts(telegram, CHAT) == [GREETING])
    assert await tg_post(client, tg_update(301, "one", chat=CHAT)) == 200
    assert await tg_post(client, tg_update(302, "two", chat=CHAT)) == 200
    telegram.add_file("photo-9", b"9" * 10, file_path="photos/9.jpg")
    assert await tg_post(client, album_photo(303, "24680", "photo-9")) == 200
    await eventually(lambda: len(tg_texts(telegram, CHAT)) == 4)
    assert tg_texts(telegram, CHAT)[1:3] == ["You said: one", "You said: two"]
    stores: Stores = client.server.app[STORES]
    async with stores.pool.acquire() as conn:
        held = await conn.fetch(
            "SELECT external_id, extract(epoch FROM available_at - created_at)::float8"
            " FROM inbox WHERE bot_id = 'relay' AND channel = 'telegram' ORDER BY seq"
        )
    waits = {r[0]: r[1] for r in held}
    assert [waits[m] for m in ("300", "301", "302")] == [0, 0, 0]  # each runs at once
    assert waits["303"] == pytest.approx(1.0, abs=0.01)  # an album item waits for the others


async def test_whatsapp_photos_sent_one_after_another_are_one_turn(
    client: Client, graph: FakeGraphApi
) -> None:
    assert await wa_post(client, wa_message("wamid.P0", "hi")) == 200
    await eventually(lambda: len(graph.sent) == 1)
    for n in (1, 2, 3):
        graph.add_media(f"70{n}", bytes([n]) * (10 * n), "image/jpeg")
        image: dict[str, Any] = {"id": f"70{n}", "mime_type": "image/jpeg"}
        if n == 1:
            image["caption"] = "the damage"
        photo = wa_media(f"wamid.P{n}", "image", image)
        assert await wa_post(client, wa_notification(messages=[photo])) == 200
    await eventually(lambda: len(graph.sent) == 2)
    await asyncio.sleep(1.5)
    assert [m["text"]["body"] for m in graph.sent] == [GREETING, "You said: *the damage*"]
    rows = await user_rows(client, "whatsapp", WA_USER)
    assert [(a["kind"], a["size"]) for a in rows[1]["attachments"]] == [
        ("image", 10),
        ("image", 20),
        ("image", 30),
    ]
