"""SEND FILE TO end to end: a dialog sends files from its drive or a URL, and each channel
gets them its own way, through the real SDKs, from a real gateway on a real PostgreSQL.

Telegram gets sendPhoto, sendDocument, sendVoice and sendAudio uploads (PTB's multipart);
WhatsApp an upload to ``/{phone-number-id}/media`` (streamed) then a message naming its
media id, reused when the message is retried; Twilio's WhatsApp a ``MediaUrl`` to the
gateway's signed URL, Twilio's SMS a link; the web API and widget the file's URL. A file
too large for a channel goes as a link; a missing file is the dialog's error to handle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.keys import STORES
from gateway.widget import render_frame
from tests.channels.fake_graph import FakeGraphApi
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.fake_twilio import FakeTwilioApi
from tests.channels.gateway_harness import (
    CHAT,
    TWILIO_FROM,
    WA_USER,
    Client,
    channel_rows,
    eventually,
    sms,
    telegram_rows,
    tg_post,
    tg_update,
    twilio_post,
    wa_message,
    wa_post,
    write_bot,
)
from tests.databases import database_fixture
from tests.fake_servers import fake_server
from tests.gateway.credentials import bearer, hs256_token
from tests.gateway.test_proactive import AUTH, settings_for
from tests.gateway.test_websocket import frames_until_done, hello

APP = bearer(hs256_token(roles=["app"]))
PUBLIC = "https://bots.example.com"

DIALOG = """\
me = GET "session.user_id"
TALK "Ready."
DO WHILE 1 = 1
    HEAR what
    IF what = "photo" THEN
        SEND FILE TO me, "photo.png", "A **photo**"
    ELSEIF what = "menu" THEN
        SEND FILE TO me, "docs/menu.pdf", "Our menu"
    ELSEIF what = "voice" THEN
        SEND FILE TO me, "note.ogg"
    ELSEIF what = "song" THEN
        SEND FILE TO me, "song.mp3", "A song"
    ELSEIF what = "big" THEN
        SEND FILE TO me, "big.jpg", "Big"
    ELSEIF what = "choose" THEN
        SEND FILE TO me, "docs/menu.pdf", "Our menu"
        HEAR pick AS "Pasta", "Pizza"
        TALK "You chose " + pick
    ELSEIF what = "listen" THEN
        SEND FILE TO me, "note.ogg"
        HEAR pick AS "Again", "Enough"
    ELSEIF what = "tell" THEN
        SEND FILE TO "telegram:424242", "photo.png", "For you"
        TALK "sent"
    ELSEIF what = "missing" THEN
        ON ERROR RESUME NEXT
        SEND FILE TO me, "nothere.pdf"
        TALK "error: " + err
    ELSE
        SEND FILE TO me, what, "fetched"
    END IF
LOOP
"""

TICKER = """\
SET SCHEDULE "* * * * * *"
SEND FILE TO "telegram:777", "tick.png", "tick"
"""


def png(width: int = 32, height: int = 24) -> bytes:
    """A real PNG, one red picture, written by hand (its chunks and their CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\xc8\x1e\x3c" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PHOTO = png()
MENU = b"%PDF-1.4\n% a menu\n" + bytes(range(256)) * 40
NOTE = b"OggS\x00\x02" + b"\x01" * 5000
SONG = b"ID3\x04" + b"\x02" * 7000
BIG = b"\xff\xd8\xff\xe0" + b"\x07" * (6 * 1024 * 1024)  # over WhatsApp's 5 MB for images

graph = fake_server(FakeGraphApi)
telegram = fake_server(FakeBotApi)
ticker_telegram = fake_server(FakeBotApi)  # the Telegram of the bot that sends a file every second
twilio = fake_server(FakeTwilioApi)
database = database_fixture("botserver_files")


@pytest.fixture
async def files_site() -> AsyncIterator[str]:
    """A web server with a picture, as a URL a dialog names."""

    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=PHOTO, content_type="image/png")

    app = web.Application()
    app.router.add_get("/pictures/cat", picture)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str,  # first: dropped only after the gateway closed its pool
    tmp_path: Path,
    graph: FakeGraphApi,
    telegram: FakeBotApi,
    twilio: FakeTwilioApi,
    aiohttp_client,
) -> Client:
    folder = tmp_path / "bots"
    write_bot(
        folder,
        "relay",
        channel_rows(telegram, graph, twilio)
        | {"http-allow-private": "true"},  # the test's web server is on 127.0.0.1
        DIALOG,
    )
    drive = folder / "relay.gbai" / "relay.gbdrive"
    (drive / "docs").mkdir(parents=True)
    (drive / "photo.png").write_bytes(PHOTO)
    (drive / "docs" / "menu.pdf").write_bytes(MENU)
    (drive / "note.ogg").write_bytes(NOTE)
    (drive / "song.mp3").write_bytes(SONG)
    (drive / "big.jpg").write_bytes(BIG)
    return await gateway(aiohttp_client, database, folder, tmp_path / "data")


async def gateway(aiohttp_client: Any, database: str, bots: Path, data: Path) -> Client:
    settings = dataclasses.replace(settings_for(database, bots, data), public_url=PUBLIC)
    client: Client = await aiohttp_client(create_app(settings, auth=AUTH))
    return client


@pytest.fixture
async def ticker(  # type: ignore[no-untyped-def]
    database: str, tmp_path: Path, ticker_telegram: FakeBotApi, aiohttp_client
) -> Client:
    """A gateway with one bot, whose scheduled job sends a file every second."""
    folder = tmp_path / "bots"
    write_bot(folder, "ticker", telegram_rows(ticker_telegram), 'TALK "hi"\n')
    (folder / "ticker.gbai" / "ticker.gbdialog" / "tick.bas").write_text(TICKER)
    (folder / "ticker.gbai" / "ticker.gbdrive").mkdir()
    (folder / "ticker.gbai" / "ticker.gbdrive" / "tick.png").write_bytes(PHOTO)
    return await gateway(aiohttp_client, database, folder, tmp_path / "data")


async def sent_rows(client: Client, channel: str, bot: str = "relay") -> list[Any]:
    stores = client.server.app[STORES]
    async with stores.pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT status, provider_ids, message FROM outbox"
                " WHERE bot_id = $1 AND channel = $2 ORDER BY seq",
                bot,
                channel,
            )
        )


async def media_bytes(client: Client, url: str) -> bytes:
    """The file behind a signed URL of the gateway's (its public address is the test's)."""
    assert url.startswith(PUBLIC + "/media/"), url
    resp = await client.get(urlsplit(url).path)
    assert resp.status == 200
    return await resp.read()


# -- Telegram ---------------------------------------------------------------------------------


async def test_telegram_gets_each_file_with_the_method_its_type_calls_for(
    client: Client, telegram: FakeBotApi
) -> None:
    await tg_post(client, tg_update(1, "hi"))
    await eventually(lambda: telegram.calls_to("sendMessage"))
    for n, what in enumerate(("photo", "menu", "voice", "song"), start=2):
        assert await tg_post(client, tg_update(n, what)) == 200
        await eventually(lambda n=n: len(telegram.uploads) == n - 1)  # type: ignore[misc]
    photo, menu, voice, song = telegram.uploads
    assert (photo.method, photo.field, photo.filename, photo.data) == (
        "sendPhoto",
        "photo",
        "photo.png",
        PHOTO,
    )
    assert (menu.method, menu.filename, menu.data) == ("sendDocument", "menu.pdf", MENU)
    assert (voice.method, voice.data) == ("sendVoice", NOTE)
    assert (song.method, song.data) == ("sendAudio", SONG)
    [call] = telegram.calls_to("sendPhoto")
    assert (call.params["caption"], call.params["parse_mode"]) == ("A <b>photo</b>", "HTML")
    assert call.content_type == "multipart/form-data"
    assert "caption" not in telegram.calls_to("sendVoice")[0].params
    # Each file is one part of its reply, recorded with the provider's message id.
    deadline = time.monotonic() + 5
    while True:
        rows = await sent_rows(client, "telegram")
        if all(r["status"] == "sent" for r in rows) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    files = [r for r in rows if r["message"].get("attachments")]
    assert [len(r["provider_ids"]) for r in files] == [1, 1, 1, 1]
    assert files[0]["message"]["attachments"][0]["key"] == "relay/relay.gbdrive/photo.png"


async def test_the_buttons_of_a_hear_after_a_file_come_with_it(
    client: Client, telegram: FakeBotApi
) -> None:
    await tg_post(client, tg_update(1, "hi"))
    await eventually(lambda: telegram.calls_to("sendMessage"))
    assert await tg_post(client, tg_update(2, "choose")) == 200
    await eventually(lambda: len(telegram.calls_to("sendMessage")) == 2)
    [document] = telegram.calls_to("sendDocument")
    assert "caption" not in document.params  # the caption carries the buttons instead
    carrier = telegram.calls_to("sendMessage")[1]
    assert carrier.params["text"] == "Our menu"
    labels = [b["text"] for row in carrier.params["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["Pasta", "Pizza"]
    assert document.at <= carrier.at

    assert await tg_post(client, tg_update(3, "Pizza")) == 200
    await eventually(lambda: len(telegram.calls_to("sendMessage")) == 3)
    assert telegram.calls_to("sendMessage")[2].params["text"] == "You chose Pizza"

    # A file with no caption: its name carries the buttons.
    assert await tg_post(client, tg_update(4, "listen")) == 200
    await eventually(lambda: len(telegram.calls_to("sendMessage")) == 4)
    assert telegram.calls_to("sendVoice")
    named = telegram.calls_to("sendMessage")[3]
    assert named.params["text"] == "note.ogg"
    labels = [b["text"] for row in named.params["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["Again", "Enough"]


async def test_a_telegram_file_refused_with_a_5xx_is_sent_again_once(
    client: Client, telegram: FakeBotApi
) -> None:
    await tg_post(client, tg_update(1, "hi"))
    await eventually(lambda: telegram.calls_to("sendMessage"))
    telegram.fail_next("sendPhoto", 502)
    await tg_post(client, tg_update(2, "photo"))
    await eventually(lambda: telegram.uploads, within=15)
    await asyncio.sleep(0.5)
    assert len(telegram.calls_to("sendPhoto")) == 2  # the refused one, the sent one
    assert len(telegram.uploads) == 1
    photos = [m for m in telegram.history(CHAT) if "photo" in m]
    assert len(photos) == 1


async def test_a_missing_file_is_an_error_the_dialog_handles(
    client: Client, telegram: FakeBotApi
) -> None:
    await tg_post(client, tg_update(1, "hi"))
    await tg_post(client, tg_update(2, "missing"))
    texts = await eventually(lambda: [m["text"] for m in telegram.history(CHAT) if "text" in m][1:])
    assert texts == [
        "error: SEND FILE TO: Failed to send file: no file 'nothere.pdf' in the bot's drive"
        " (relay.gbdrive)"
    ]
    assert telegram.uploads == []


async def test_a_file_named_by_its_url_is_fetched_once_and_sent(
    client: Client, telegram: FakeBotApi, files_site: str
) -> None:
    await tg_post(client, tg_update(1, "hi"))
    await tg_post(client, tg_update(2, f"{files_site}/pictures/cat"))
    [upload] = await eventually(lambda: telegram.uploads)
    assert (upload.method, upload.data) == ("sendPhoto", PHOTO)
    assert upload.filename == "cat.png"  # named by the type the server gave


# -- WhatsApp ---------------------------------------------------------------------------------


def wa_media(graph: FakeGraphApi) -> list[dict[str, Any]]:
    return [m for m in graph.sent if m and m.get("type") not in ("text", None)]


async def test_whatsapp_uploads_the_file_then_sends_a_message_naming_it(
    client: Client, graph: FakeGraphApi
) -> None:
    await wa_post(client, wa_message("wamid.M1", "hi"))
    await eventually(lambda: graph.sent)
    await wa_post(client, wa_message("wamid.M2", "photo"))
    [message] = await eventually(lambda: wa_media(graph))
    [upload] = graph.uploads
    assert (upload.type, upload.filename, upload.data) == ("image/png", "photo.png", PHOTO)
    assert upload.chunked  # streamed from the store, not read whole first
    assert message["type"] == "image" and message["to"] == WA_USER
    assert message["image"] == {"id": upload.media_id, "caption": "A *photo*"}
    await wa_post(client, wa_message("wamid.M3", "menu"))
    await eventually(lambda: len(wa_media(graph)) == 2)
    document = wa_media(graph)[1]["document"]
    assert document == {
        "id": graph.uploads[1].media_id,
        "caption": "Our menu",
        "filename": "menu.pdf",
    }


async def test_a_whatsapp_message_retried_reuses_its_upload(
    client: Client, graph: FakeGraphApi
) -> None:
    await wa_post(client, wa_message("wamid.R1", "hi"))
    await eventually(lambda: graph.sent)
    graph.fail_upload_next(500)  # the first upload fails: uploaded again
    graph.fail_next(131000)  # then the message fails: sent again, with the same media id
    await wa_post(client, wa_message("wamid.R2", "voice"))

    def tries() -> list[dict[str, Any]]:
        return [m for m in graph.sent if m and m.get("type") == "audio"]

    await eventually(lambda: len(tries()) == 2, within=20)  # refused, then accepted
    await asyncio.sleep(0.5)
    [upload] = graph.uploads
    assert all(m["audio"] == {"id": upload.media_id} for m in tries())  # no caption on audio
    assert len(tries()) == 2
    rows = await sent_rows(client, "whatsapp")
    assert rows[-1]["message"]["uploads"] == {"0": upload.media_id}


async def test_while_a_file_uploads_its_row_is_not_on_its_way_to_the_user(
    client: Client, graph: FakeGraphApi
) -> None:
    """A crash during an upload must not leave the file "maybe sent" (never sent again):
    only the message after it marks the row as on its way."""
    await wa_post(client, wa_message("wamid.U1", "hi"))
    await eventually(lambda: graph.sent)
    graph.upload_delay = 2.0
    await wa_post(client, wa_message("wamid.U2", "menu"))
    stores = client.server.app[STORES]

    async def row() -> Any:
        async with stores.pool.acquire() as conn:
            return await conn.fetchrow(
                "SELECT status, in_flight FROM outbox WHERE channel = 'whatsapp'"
                " AND message ? 'attachments'"
            )

    await eventually(lambda: graph.uploads_arrived == 1, within=15)  # the upload is under way
    found = await row()
    assert graph.uploads == [] and (found["status"], found["in_flight"]) == ("sending", False)
    await eventually(lambda: wa_media(graph), within=15)
    assert len(graph.uploads) == 1


async def test_a_file_over_whatsapps_limit_goes_as_a_link(
    client: Client, graph: FakeGraphApi
) -> None:
    await wa_post(client, wa_message("wamid.B1", "hi"))
    await eventually(lambda: graph.sent)
    await wa_post(client, wa_message("wamid.B2", "big"))
    await eventually(lambda: len(graph.sent) == 2)
    text = graph.sent[1]["text"]["body"]
    caption, link = text.split("\n\n")
    assert caption == "Big" and graph.uploads == []
    name, url = link.split(": ", 1)
    assert name == "big.jpg"
    assert await media_bytes(client, url) == BIG


# -- Twilio -----------------------------------------------------------------------------------


def twilio_whatsapp(sid: str, body: str) -> dict[str, str]:
    return sms(sid, body) | {"From": "whatsapp:+14155550100", "To": f"whatsapp:{TWILIO_FROM}"}


async def test_twilio_whatsapp_gets_a_media_url_it_can_fetch(
    client: Client, twilio: FakeTwilioApi
) -> None:
    await twilio_post(client, twilio_whatsapp("SM" + "a" * 32, "hi"))
    await eventually(lambda: twilio.calls)
    await twilio_post(client, twilio_whatsapp("SM" + "b" * 32, "photo"))
    await eventually(lambda: len(twilio.calls) == 2)
    call = twilio.calls[1]
    assert call.form["Body"] == "A *photo*"
    [url] = call.media_urls
    assert await media_bytes(client, url) == PHOTO


async def test_an_sms_gets_the_file_as_a_link(client: Client, twilio: FakeTwilioApi) -> None:
    await twilio_post(client, sms("SM" + "c" * 32, "hi"))
    await eventually(lambda: twilio.calls)
    await twilio_post(client, sms("SM" + "d" * 32, "menu"))
    await eventually(lambda: len(twilio.calls) == 2)
    call = twilio.calls[1]
    assert call.media_urls == []
    caption, link = call.form["Body"].split("\n\n")
    assert caption == "Our menu" and link.startswith("menu.pdf: ")
    assert await media_bytes(client, link.removeprefix("menu.pdf: ")) == MENU


# -- the web ----------------------------------------------------------------------------------


async def test_the_web_api_and_the_widget_show_the_file(client: Client) -> None:
    async def say(text: str) -> list[dict[str, Any]]:
        resp = await client.post(
            "/api/v1/bots/relay/messages", json={"user_id": "web-ada", "text": text}, headers=APP
        )
        assert resp.status == 200, await resp.text()
        replies: list[dict[str, Any]] = (await resp.json())["replies"]
        return replies

    assert [r["text"] for r in await say("hi")] == ["Ready."]
    [reply] = await say("photo")
    assert reply["text"] == "A **photo**"
    [file] = reply["attachments"]
    assert (file["kind"], file["filename"], file["content_type"]) == (
        "image",
        "photo.png",
        "image/png",
    )
    assert await media_bytes(client, file["url"]) == PHOTO
    html = render_frame({"type": "message", "text": reply["text"], "attachments": [file]})
    assert html is not None
    assert f'<img class="msg-image" src="{file["url"]}" alt="photo.png">' in html
    [reply] = await say("menu")
    html = render_frame({"type": "message", "text": "", "attachments": reply["attachments"]})
    assert html is not None and 'download="menu.pdf"' in html and "📎 menu.pdf" in html


async def test_a_file_sent_to_someone_else_goes_through_the_outbox_to_their_channel(
    client: Client, telegram: FakeBotApi
) -> None:
    for text in ("hi", "tell"):
        resp = await client.post(
            "/api/v1/bots/relay/messages", json={"user_id": "web-bo", "text": text}, headers=APP
        )
        assert resp.status == 200
    assert [r["text"] for r in (await resp.json())["replies"]] == ["sent"]
    [upload] = await eventually(lambda: telegram.uploads)
    assert (upload.method, upload.data) == ("sendPhoto", PHOTO)
    [call] = telegram.calls_to("sendPhoto")
    assert (call.params["chat_id"], call.params["caption"]) == (CHAT, "For you")
    [row] = [r for r in await sent_rows(client, "telegram") if r["message"].get("attachments")]
    assert row["message"]["origin"] == "talk-to"


async def test_the_websocket_sends_the_file_and_replays_it_with_a_fresh_link(
    client: Client,
) -> None:
    async with client.ws_connect("/ws/relay", headers=APP) as ws:
        await hello(ws, user_id="ws-cy")
        await ws.send_json({"type": "message", "text": "hi"})
        session = (await frames_until_done(ws))[-1]["session_id"]
        await ws.send_json({"type": "message", "text": "photo"})
        frame, _done = await frames_until_done(ws)
    [file] = frame["attachments"]
    assert (frame["text"], file["kind"], file["filename"]) == ("A **photo**", "image", "photo.png")
    assert await media_bytes(client, file["url"]) == PHOTO
    # The widget's socket (HTML fragments) replays the history: the picture again.
    async with client.ws_connect("/ws/relay?format=html", headers=APP) as ws:
        await ws.send_json({"type": "auth", "user_id": "ws-cy", "session_id": session})
        html = ""
        while 'id="session"' not in html:
            html += await ws.receive_str(timeout=10)
    [src] = re.findall(r'<img class="msg-image" src="([^"]+)" alt="photo.png">', html)
    assert await media_bytes(client, src.replace("&amp;", "&")) == PHOTO


async def test_a_scheduled_job_sends_a_file_once_per_occurrence(
    ticker: Client, ticker_telegram: FakeBotApi
) -> None:
    await eventually(lambda: len(ticker_telegram.uploads) >= 2, within=15)
    calls = ticker_telegram.calls_to("sendPhoto")
    assert {(c.params["chat_id"], c.params["caption"]) for c in calls} == {(777, "tick")}
    assert all(u.data == PHOTO for u in ticker_telegram.uploads)
    # One row per occurrence, each sent once (the occurrence's key names its row).
    rows = [r for r in await sent_rows(ticker, "telegram", "ticker") if r["status"] == "sent"]
    assert rows and all(len(r["provider_ids"]) == 1 for r in rows)
    assert len({r["provider_ids"][0] for r in rows}) == len(rows)
