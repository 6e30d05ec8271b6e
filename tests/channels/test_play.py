"""PLAY and STOP end to end, from a real gateway on a real PostgreSQL: the web API gets a
player with the file and its options, and STOP's closing of it; Telegram (the real SDK
against the fake Bot API) and Twilio's SMS get the file as ``SEND FILE TO`` sends it, a
page as its address, and nothing for STOP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.widget import render_frame
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.fake_twilio import FakeTwilioApi
from tests.channels.gateway_harness import (
    CHAT,
    Client,
    eventually,
    sms,
    telegram_rows,
    tg_post,
    tg_update,
    twilio_post,
    twilio_rows,
    write_bot,
)
from tests.channels.test_outbound_files import (
    MENU,
    PHOTO,
    SONG,
    gateway,
    media_bytes,
    sent_rows,
)
from tests.databases import database_fixture
from tests.fake_servers import fake_server
from tests.gateway.credentials import bearer, hs256_token
from tests.gateway.test_openapi import check
from tests.gateway.test_websocket import frames_until_done, hello

APP = bearer(hs256_token(roles=["app"]))
VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"\x03" * 4000
YOUTUBE = "https://www.youtube.com/embed/dQw4w9WgXcQ"

DIALOG = """\
TALK "Ready."
DO WHILE 1 = 1
    HEAR what
    IF what = "video" THEN
        PLAY "intro.mp4" WITH OPTIONS "autoplay, muted,start=5,bogus,width=320,height=x"
    ELSEIF what = "photo" THEN
        PLAY "photo.png"
        TALK "Here it is."
    ELSEIF what = "menu" THEN
        PLAY "docs/menu.pdf" WITH OPTIONS "fullscreen"
    ELSEIF what = "song" THEN
        shown = PLAY "song.mp3" WITH OPTIONS "loop,nocontrols"
        TALK LEN(shown) > 0
    ELSEIF what = "stop" THEN
        STOP
        TALK "Stopped."
    ELSEIF what = "quiet" THEN
        STOP
    ELSEIF what = "site" THEN
        PLAY "https://www.youtube.com/embed/dQw4w9WgXcQ"
    ELSEIF what = "choose" THEN
        PLAY "photo.png"
        HEAR pick AS "Again", "Enough"
    ELSEIF what = "missing" THEN
        ON ERROR RESUME NEXT
        PLAY "nothere.mp4"
        TALK "error: " + err
    END IF
LOOP
"""


telegram = fake_server(FakeBotApi)
twilio = fake_server(FakeTwilioApi)
database = database_fixture("botserver_play")


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str,  # first: dropped only after the gateway closed its pool
    tmp_path: Path,
    telegram: FakeBotApi,
    twilio: FakeTwilioApi,
    aiohttp_client,
) -> Client:
    folder = tmp_path / "bots"
    config = telegram_rows(telegram) | twilio_rows(twilio)
    write_bot(folder, "relay", config, DIALOG)
    drive = folder / "relay.gbai" / "relay.gbdrive"
    (drive / "docs").mkdir(parents=True)
    (drive / "intro.mp4").write_bytes(VIDEO)
    (drive / "photo.png").write_bytes(PHOTO)
    (drive / "docs" / "menu.pdf").write_bytes(MENU)
    (drive / "song.mp3").write_bytes(SONG)
    return await gateway(aiohttp_client, database, folder, tmp_path / "data")


OPTIONS = {
    "autoplay": False,
    "loop": False,
    "fullscreen": False,
    "muted": False,
    "controls": True,
    "start": None,
    "end": None,
    "width": None,
    "height": None,
    "theme": None,
    "page": None,
    "slide": None,
    "zoom": None,
}


async def test_the_web_api_gets_a_player_and_stop_closes_it(client: Client) -> None:
    async def say(text: str) -> list[dict[str, Any]]:
        resp = await client.post(
            "/api/v1/bots/relay/messages", json={"user_id": "web-ada", "text": text}, headers=APP
        )
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        sessions.add(body["session_id"])
        replies: list[dict[str, Any]] = body["replies"]
        for reply in replies:  # as the API's document says
            check("/components/schemas/Reply", reply)
        return replies

    sessions: set[str] = set()
    assert [r["text"] for r in await say("hi")] == ["Ready."]

    [video] = await say("video")
    player = video.pop("player")
    assert player.pop("id")
    assert player == {
        "action": "play",
        "content_type": "video",
        "title": "intro",
        "url": None,
        "options": OPTIONS | {"autoplay": True, "muted": True, "start": 5.0, "width": 320},
    }  # "bogus" and a height that is no number ignored, as General Bots ignores them
    [file] = video["attachments"]
    assert (video["text"], file["kind"], file["filename"]) == ("", "video", "intro.mp4")
    assert await media_bytes(client, file["url"]) == VIDEO

    shown, said = await say("photo")
    assert (shown["player"]["content_type"], shown["attachments"][0]["filename"]) == (
        "image",
        "photo.png",
    )
    assert said == {"text": "Here it is.", "suggestions": []}

    [menu] = await say("menu")
    assert (menu["player"]["content_type"], menu["player"]["options"]["fullscreen"]) == (
        "pdf",
        True,
    )
    html = render_frame({"type": "message", **menu})
    assert html is not None and 'class="player player-fullscreen"' in html
    assert '<a class="player-file"' in html and "<iframe" not in html

    [song, value] = await say("song")
    assert song["player"]["options"] == OPTIONS | {"loop": True, "controls": False}
    assert value["text"] == "true"  # PLAY's value: the player's JSON

    closed, said = await say("stop")
    assert closed == {"text": "", "suggestions": [], "player": closed["player"]}
    assert (closed["player"]["action"], said["text"]) == ("stop", "Stopped.")

    [site] = await say("site")
    assert "attachments" not in site
    assert (site["text"], site["player"]["url"], site["player"]["content_type"]) == (
        YOUTUBE,
        YOUTUBE,
        "video",
    )

    [error] = await say("missing")
    assert error["text"] == "error: PLAY: no file 'nothere.mp4' in the bot's drive (relay.gbdrive)"

    # The history keeps the files played; a STOP said nothing to keep.
    [session] = sessions
    resp = await client.get(f"/api/v1/bots/relay/sessions/{session}/messages", headers=APP)
    history = [
        (m["role"], m["text"], len(m.get("attachments", [])))
        for m in (await resp.json())["messages"]
    ]
    bot = [(text, files) for role, text, files in history if role != "user"]
    assert bot == [
        ("Ready.", 0),
        ("", 1),
        ("", 1),
        ("Here it is.", 0),
        ("", 1),
        ("", 1),
        ("true", 0),
        ("Stopped.", 0),
        (YOUTUBE, 0),
        ("error: PLAY: no file 'nothere.mp4' in the bot's drive (relay.gbdrive)", 0),
    ]


async def test_the_websocket_frame_carries_the_player(client: Client) -> None:
    async with client.ws_connect("/ws/relay", headers=APP) as ws:
        await hello(ws, user_id="ws-cy")
        await ws.send_json({"type": "message", "text": "hi"})
        await frames_until_done(ws)
        await ws.send_json({"type": "message", "text": "choose"})
        frame, _done = await frames_until_done(ws)
    check("/components/schemas/WsReplyFrame", frame)
    assert (frame["player"]["action"], frame["attachments"][0]["kind"]) == ("play", "image")
    # the buttons of the HEAR after it ride on it
    assert [s["label"] for s in frame["suggestions"]] == ["Again", "Enough"]


# -- Telegram: the file as SEND FILE TO sends it, nothing for STOP ------------------------------


async def test_telegram_gets_the_file_natively_and_nothing_for_stop(
    client: Client,
    telegram: FakeBotApi,
) -> None:
    await tg_post(client, tg_update(1, "hi"))
    await eventually(lambda: telegram.calls_to("sendMessage"))
    for n, what in enumerate(("video", "menu", "photo"), start=2):
        assert await tg_post(client, tg_update(n, what)) == 200
        await eventually(lambda n=n: len(telegram.uploads) == n - 1)  # type: ignore[misc]
    video, menu, photo = telegram.uploads
    assert (video.method, video.filename, video.data) == ("sendVideo", "intro.mp4", VIDEO)
    assert (menu.method, menu.filename, menu.data) == ("sendDocument", "menu.pdf", MENU)
    assert (photo.method, photo.data) == ("sendPhoto", PHOTO)
    assert "caption" not in telegram.calls_to("sendVideo")[0].params
    await eventually(lambda: len(telegram.calls_to("sendMessage")) == 2)
    assert telegram.calls_to("sendMessage")[1].params["text"] == "Here it is."

    # STOP: nothing to close on Telegram; what follows it is all that is sent
    assert await tg_post(client, tg_update(5, "stop")) == 200
    await eventually(lambda: len(telegram.calls_to("sendMessage")) == 3)
    assert telegram.calls_to("sendMessage")[2].params["text"] == "Stopped."
    assert await tg_post(client, tg_update(6, "quiet")) == 200  # STOP alone: no reply at all
    # a page: its address, which Telegram previews
    assert await tg_post(client, tg_update(7, "site")) == 200
    await eventually(lambda: len(telegram.calls_to("sendMessage")) == 4)
    await asyncio.sleep(0.3)
    texts = [c.params["text"] for c in telegram.calls_to("sendMessage")]
    assert texts == ["Ready.", "Here it is.", "Stopped.", YOUTUBE]
    assert len(telegram.uploads) == 3
    rows = [r["message"] for r in await sent_rows(client, "telegram")]
    assert not [m for m in rows if "player" in m]  # no player there: STOP leaves no reply
    assert [m["text"] for m in rows if not m.get("attachments")] == texts


async def test_telegram_gets_the_buttons_of_a_hear_after_play(
    client: Client,
    telegram: FakeBotApi,
) -> None:
    await tg_post(client, tg_update(1, "hi"))
    await eventually(lambda: telegram.calls_to("sendMessage"))
    assert await tg_post(client, tg_update(2, "choose")) == 200
    await eventually(lambda: len(telegram.calls_to("sendMessage")) == 2)
    assert telegram.calls_to("sendPhoto")
    carrier = telegram.calls_to("sendMessage")[1]
    labels = [b["text"] for row in carrier.params["reply_markup"]["inline_keyboard"] for b in row]
    assert (carrier.params["text"], labels) == ("photo.png", ["Again", "Enough"])


async def test_a_missing_file_is_the_dialogs_error_on_telegram(
    client: Client,
    telegram: FakeBotApi,
) -> None:
    await tg_post(client, tg_update(1, "hi"))
    await tg_post(client, tg_update(2, "missing"))
    texts = await eventually(lambda: [m["text"] for m in telegram.history(CHAT) if "text" in m][1:])
    assert texts == ["error: PLAY: no file 'nothere.mp4' in the bot's drive (relay.gbdrive)"]
    assert telegram.uploads == []


# -- SMS: a link to the file -----------------------------------------------------------------


async def test_an_sms_gets_a_link_to_the_file_and_nothing_for_stop(
    client: Client,
    twilio: FakeTwilioApi,
) -> None:
    await twilio_post(client, sms("SM" + "c" * 32, "hi"))
    await eventually(lambda: twilio.calls)
    await twilio_post(client, sms("SM" + "d" * 32, "menu"))
    await eventually(lambda: len(twilio.calls) == 2)
    call = twilio.calls[1]
    assert call.media_urls == []
    assert call.form["Body"].startswith("menu.pdf: ")
    assert await media_bytes(client, call.form["Body"].removeprefix("menu.pdf: ")) == MENU
    await twilio_post(client, sms("SM" + "e" * 32, "stop"))
    await eventually(lambda: len(twilio.calls) == 3)
    await asyncio.sleep(0.3)
    assert [c.form["Body"] for c in twilio.calls[2:]] == ["Stopped."]
