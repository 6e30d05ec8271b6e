"""Voice notes end to end: a real gateway on a real PostgreSQL, the real SDKs, fake
Telegram (getFile), Graph (media id) and Twilio (MediaUrl) APIs and a fake OpenAI
transcription server. A voice note comes in through its webhook, its turn fetches it
once, keeps it, transcribes it, answers what it said through the outbox, and the history
API shows the transcript beside the kept audio."""

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
from tests.channels.fake_twilio import ACCOUNT_SID, FakeTwilioApi
from tests.channels.gateway_harness import (
    TWILIO_FROM,
    WA_USER,
    Client,
    channel_rows,
    eventually,
    gateway_settings,
    tg_post,
    tg_texts,
    tg_update,
    twilio_post,
    wa_media,
    wa_message,
    wa_notification,
    wa_post,
    write_bot,
)
from tests.channels.test_gateway_media import ADMIN_TOKEN, CHAT, history
from tests.databases import database_fixture
from tests.fake_servers import fake_server
from tests.voice.fake_stt import API_KEY, FakeSpeechToText
from tests.voice.speech_samples import need_tools, speak

SENTENCE = "I would like to cancel my order"
HEARD = "I would like to cancel my order."

telegram = fake_server(FakeBotApi)
graph = fake_server(FakeGraphApi)
twilio = fake_server(FakeTwilioApi)
stt = fake_server(lambda: FakeSpeechToText(default=HEARD))
database = database_fixture("botserver_voice")


@pytest.fixture
def bots(
    tmp_path: Path,
    telegram: FakeBotApi,
    graph: FakeGraphApi,
    twilio: FakeTwilioApi,
    stt: FakeSpeechToText,
) -> Path:
    folder = tmp_path / "bots"
    transcription = {
        "transcription-url": stt.base_url,
        "transcription-key": API_KEY,
        "transcription-model": "whisper-1",
    }
    write_bot(folder, "relay", channel_rows(telegram, graph, twilio) | transcription)
    return folder


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str,
    bots: Path,
    tmp_path: Path,
    aiohttp_client,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    monkeypatch.setenv("BOTSERVER_ADMIN_TOKEN", ADMIN_TOKEN)
    return await aiohttp_client(create_app(gateway_settings(database, bots, tmp_path / "data")))


async def heard_row(client: Client, channel: str, user: str) -> dict[str, Any]:
    """The user's history row that carried the voice note, once its turn committed."""
    deadline = time.monotonic() + 15
    while True:
        for row in await history(client, channel, user):
            if row["role"] == "user" and row.get("attachments"):
                return row
        assert time.monotonic() < deadline, "no voice note in the history"
        await _pause()


async def _pause() -> None:
    await asyncio.sleep(0.05)


async def kept(client: Client, url: str) -> bytes:
    resp = await client.get(url)
    assert resp.status == 200
    return await resp.read()


def tg_voice(update_id: int, file_id: str, size: int, duration: int) -> bytes:
    message = {
        "message_id": update_id,
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ada"},
        "chat": {"id": CHAT, "first_name": "Ada", "type": "private"},
        "date": int(time.time()),
        "voice": {
            "file_id": file_id,
            "file_unique_id": file_id[-6:],
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": size,
        },
    }
    return json.dumps({"update_id": update_id, "message": message}).encode()


async def test_a_telegram_voice_note_is_answered_by_what_it_said(
    client: Client,
    telegram: FakeBotApi,
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    audio = speak(SENTENCE, "ogg")
    path = telegram.add_file("AwACAgQ-voice", audio, file_path="voice/file_7.oga")
    assert await tg_post(client, tg_update(1001, "hi", CHAT)) == 200
    await eventually(lambda: tg_texts(telegram, CHAT) == ["Hello from relay."])
    assert await tg_post(client, tg_voice(1002, "AwACAgQ-voice", len(audio), 3)) == 200
    await eventually(lambda: len(tg_texts(telegram, CHAT)) == 2)
    assert (
        tg_texts(telegram, CHAT)[1] == f"You said: {HEARD}"
    )  # the fake keeps the text, not the HTML
    row = await heard_row(client, "telegram", str(CHAT))
    [note] = row["attachments"]
    assert (row["text"], note["kind"], note["transcript"]) == (HEARD, "audio", HEARD)
    assert await kept(client, note["url"]) == audio
    assert telegram.downloads == {path: 1}
    [call] = stt.calls
    assert (call.filename, call.format_name, call.data) == ("voice.ogg", "ogg", audio)
    stores: Stores = client.server.app[STORES]
    [record] = await stores.media.of_user("relay", "telegram", str(CHAT))
    async with stores.blobs.open(record.key + ".transcript.txt") as reader:
        assert b"".join([c async for c in reader.chunks()]) == HEARD.encode()


async def test_a_whatsapp_voice_note_by_media_id_is_answered_by_what_it_said(
    client: Client,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    audio = speak(SENTENCE, "ogg")
    graph.add_media("7001", audio, "audio/ogg")
    assert await wa_post(client, wa_message("wamid.V1", "hi")) == 200
    await eventually(lambda: graph.sent)
    voice = wa_media(
        "wamid.V2", "audio", {"id": "7001", "mime_type": "audio/ogg; codecs=opus", "voice": True}
    )
    assert await wa_post(client, wa_notification(messages=[voice])) == 200
    await eventually(lambda: len(graph.sent) == 2)
    assert graph.sent[1]["text"]["body"] == f"You said: *{HEARD}*"
    row = await heard_row(client, "whatsapp", WA_USER)
    [note] = row["attachments"]
    assert (row["text"], note["transcript"], note["content_type"]) == (HEARD, HEARD, "audio/ogg")
    assert await kept(client, note["url"]) == audio
    assert graph.downloads == {"7001": 1}
    assert len(stt.calls) == 1


async def test_a_twilio_voice_message_by_media_url_is_answered_by_what_it_said(
    client: Client,
    twilio: FakeTwilioApi,
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    audio = speak(SENTENCE, "amr")  # what MMS phones record
    sid = "MM" + "b" * 32
    url = twilio.add_media(sid, audio, "audio/amr")
    form = {
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": "whatsapp:+14155550100",
        "To": f"whatsapp:{TWILIO_FROM}",
        "Body": "",
        "NumMedia": "1",
        "MediaUrl0": url,
        "MediaContentType0": "audio/amr",
    }
    assert (await twilio_post(client, form)).status == 200
    row = await heard_row(client, "twilio-whatsapp", "+14155550100")
    [note] = row["attachments"]
    assert (row["text"], note["transcript"]) == (HEARD, HEARD)
    assert await kept(client, note["url"]) == audio
    [call] = stt.calls
    assert (call.filename, call.format_name) == ("voice.wav", "wav")  # AMR: not OpenAI's


async def test_a_provider_outage_is_retried_and_the_note_answered_later(
    client: Client,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
) -> None:
    from tests.llm.scripted import Fail

    need_tools()
    graph.add_media("7002", speak(SENTENCE, "ogg"), "audio/ogg")
    assert await wa_post(client, wa_message("wamid.V3", "hi")) == 200
    await eventually(lambda: graph.sent)
    stt.script(Fail(503, "The engine is currently overloaded"))
    voice = wa_media("wamid.V4", "voice", {"id": "7002", "mime_type": "audio/ogg; codecs=opus"})
    assert await wa_post(client, wa_notification(messages=[voice])) == 200
    await eventually(lambda: len(graph.sent) == 2, within=20)
    assert graph.sent[1]["text"]["body"] == f"You said: *{HEARD}*"
    assert len(stt.calls) == 2  # the outage, then the retry
    assert graph.downloads == {"7002": 1}  # the note itself was kept the first time
