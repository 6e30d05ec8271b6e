"""Voice replies end to end: a real gateway on a real PostgreSQL, the real SDKs, fake
Telegram, Graph and Twilio APIs, and fake OpenAI transcription and speech servers. A
voice note comes in through its webhook; its turn hears it, answers it, speaks the answer
through the real ``openai`` SDK, and the outbox sends the text, then the voice note:
Telegram's sendVoice, WhatsApp's upload then audio message, Twilio's ``MediaUrl``; the
web API's reply carries it as a file to play."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.app import create_app
from gateway.keys import STORES
from tests.channels.fake_graph import FakeGraphApi
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.fake_twilio import ACCOUNT_SID, FakeTwilioApi
from tests.channels.gateway_harness import (
    TWILIO_FROM,
    Client,
    channel_rows,
    eventually,
    tg_post,
    tg_update,
    twilio_post,
    wa_media,
    wa_message,
    wa_notification,
    wa_post,
    write_bot,
)
from tests.channels.test_gateway_media import CHAT  # the chat tg_voice's notes come from
from tests.channels.test_gateway_voice import tg_voice
from tests.databases import database_fixture
from tests.fake_servers import fake_server
from tests.gateway.credentials import bearer, hs256_token
from tests.gateway.test_proactive import AUTH, settings_for
from tests.llm import fake_openai
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer, Fail
from tests.voice.fake_stt import API_KEY as STT_KEY
from tests.voice.fake_stt import FakeSpeechToText
from tests.voice.fake_tts import API_KEY as TTS_KEY
from tests.voice.fake_tts import FakeTextToSpeech
from tests.voice.speech_samples import need_tools, speak

APP = bearer(hs256_token(roles=["app"]))
PUBLIC = "https://bots.example.com"
SENTENCE = "I would like to cancel my order"
HEARD = "I would like to cancel my order."
SAID = f"You said: {HEARD}"  # the relay's "You said: **…**", as read aloud

telegram = fake_server(FakeBotApi)
graph = fake_server(FakeGraphApi)
twilio = fake_server(FakeTwilioApi)
stt = fake_server(lambda: FakeSpeechToText(default=HEARD))
tts = fake_server(FakeTextToSpeech)
model = fake_server(FakeOpenAI)
database = database_fixture("botserver_voice_replies")


@pytest.fixture
def voice_replies() -> str:
    """The bot's ``voice-replies`` row (a test parametrizes it to change it)."""
    return "true"


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str,  # first: dropped only after the gateway closed its pool
    tmp_path: Path,
    telegram: FakeBotApi,
    graph: FakeGraphApi,
    twilio: FakeTwilioApi,
    stt: FakeSpeechToText,
    tts: FakeTextToSpeech,
    model: FakeOpenAI,
    voice_replies: str,
    aiohttp_client,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    for name in ("LLM_URL", "LLM_KEY", "LLM_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "bots"
    rows = channel_rows(telegram, graph, twilio) | {
        "transcription-url": stt.base_url,
        "transcription-key": STT_KEY,
        "transcription-model": "whisper-1",
        "voice-replies": voice_replies,
        "tts-url": tts.base_url,
        "tts-key": TTS_KEY,
        "tts-model": "gpt-4o-mini-tts",
        "tts-voice": "coral",
    }
    write_bot(folder, "relay", rows)
    # No dialog: the model answers every message, streamed live to Telegram.
    llm = {"llm-url": f"{model.url}/v1", "llm-key": fake_openai.API_KEY, "llm-model": "gpt-4o"}
    write_bot(folder, "writer", rows | llm | {"voice-replies": "always"}, dialog="")
    (folder / "writer.gbai" / "writer.gbdialog" / "start.bas").unlink()
    settings = dataclasses.replace(
        settings_for(database, folder, tmp_path / "data"), public_url=PUBLIC
    )
    result: Client = await aiohttp_client(create_app(settings, auth=AUTH))
    return result


VOICE = "(a voice note)"


def chat_log(telegram: FakeBotApi) -> list[str]:
    """What the user sees in the chat, in order: texts, and voice notes."""
    return [
        m.get("text", VOICE if "voice" in m else "?")
        for (c, _), m in sorted(telegram.messages.items())
        if c == CHAT
    ]


async def media_bytes(client: Client, url: str) -> bytes:
    """The file behind a signed URL of the gateway's (its public address is the test's)."""
    assert url.startswith(PUBLIC + "/media/"), url
    resp = await client.get(urlsplit(url).path)
    assert resp.status == 200
    return await resp.read()


async def settled(client: Client, channel: str, turns: int) -> list[dict[str, Any]]:
    """Once ``turns`` messages of ``channel`` are done, each at its first attempt, and
    every reply of theirs is sent: the replies' messages."""
    stores = client.server.app[STORES]
    deadline = time.monotonic() + 20
    while True:
        async with stores.pool.acquire() as conn:
            inbox = await conn.fetch(
                "SELECT status, attempts FROM inbox WHERE channel = $1 ORDER BY seq", channel
            )
            outbox = await conn.fetch(
                "SELECT status, message FROM outbox WHERE channel = $1 ORDER BY seq", channel
            )
        done = [(r["status"], r["attempts"]) for r in inbox] == [("done", 1)] * turns
        if done and all(r["status"] == "sent" for r in outbox):
            return [dict(r["message"]) for r in outbox]
        assert time.monotonic() < deadline, (inbox, outbox)
        await asyncio.sleep(0.05)


async def voice_note_in(client: Client, telegram: FakeBotApi, update_id: int) -> bytes:
    audio = speak(SENTENCE, "ogg")
    telegram.add_file(f"AwACAgQ-voice-{update_id}", audio, file_path=f"voice/{update_id}.oga")
    body = tg_voice(update_id, f"AwACAgQ-voice-{update_id}", len(audio), 3)
    assert await tg_post(client, body) == 200
    return audio


# -- Telegram ---------------------------------------------------------------------------------


async def test_a_telegram_voice_note_gets_the_text_then_a_voice_note(
    client: Client, telegram: FakeBotApi, tts: FakeTextToSpeech
) -> None:
    need_tools()
    assert await tg_post(client, tg_update(1, "hi", CHAT)) == 200
    await eventually(lambda: chat_log(telegram) == ["Hello from relay."])
    assert telegram.calls_to("sendVoice") == [] and tts.calls == []  # typed: text only
    await voice_note_in(client, telegram, 2)
    [voice] = await eventually(lambda: telegram.calls_to("sendVoice"), within=20)
    assert chat_log(telegram) == ["Hello from relay.", SAID, VOICE]
    [text_call] = [c for c in telegram.calls_to("sendMessage") if "cancel" in c.params["text"]]
    assert text_call.at <= voice.at  # the text first, then the voice
    assert voice.params["chat_id"] == CHAT and "caption" not in voice.params
    # What the provider was asked, through the real SDK: the bot's model and voice, the
    # reply as plain sentences, in Opus.
    [call] = tts.calls
    assert (call.model, call.voice, call.input, call.response_format) == (
        "gpt-4o-mini-tts",
        "coral",
        SAID,
        "opus",
    )
    assert call.authorization == f"Bearer {TTS_KEY}"
    [upload] = telegram.uploads
    assert (upload.method, upload.field, upload.data) == ("sendVoice", "voice", tts.spoken[0])
    assert upload.data.startswith(b"OggS")
    replies = await settled(client, "telegram", 2)
    assert [bool(r.get("attachments")) for r in replies] == [False, False, True]


@pytest.mark.parametrize("voice_replies", ["false"])
async def test_voice_replies_false_sends_the_text_alone(
    client: Client, telegram: FakeBotApi, tts: FakeTextToSpeech
) -> None:
    need_tools()
    assert await tg_post(client, tg_update(1, "hi", CHAT)) == 200
    await eventually(lambda: chat_log(telegram) == ["Hello from relay."])
    await voice_note_in(client, telegram, 2)
    await eventually(lambda: len(chat_log(telegram)) == 2, within=20)
    replies = await settled(client, "telegram", 2)  # nothing more on its way
    assert chat_log(telegram) == ["Hello from relay.", SAID]
    assert [r["text"] for r in replies] == ["Hello from relay.", f"You said: **{HEARD}**"]
    assert telegram.calls_to("sendVoice") == [] and tts.calls == []


async def test_a_speech_outage_sends_the_text_alone_and_the_worker_goes_on(
    client: Client, telegram: FakeBotApi, tts: FakeTextToSpeech
) -> None:
    need_tools()
    assert await tg_post(client, tg_update(1, "hi", CHAT)) == 200
    await eventually(lambda: chat_log(telegram) == ["Hello from relay."])
    tts.script(Fail(500, "The server had an error while processing your request."))
    await voice_note_in(client, telegram, 2)
    await eventually(lambda: len(chat_log(telegram)) == 2, within=20)
    # The turn was not failed for it: done at its first attempt, its text sent once.
    replies = await settled(client, "telegram", 2)
    assert [r["text"] for r in replies] == ["Hello from relay.", f"You said: **{HEARD}**"]
    assert len(tts.calls) == 1 and chat_log(telegram) == ["Hello from relay.", SAID]
    # The worker serves the next message, and the voice comes back with the provider.
    await voice_note_in(client, telegram, 3)
    await eventually(lambda: telegram.calls_to("sendVoice"), within=20)
    assert chat_log(telegram) == ["Hello from relay.", SAID, SAID, VOICE]
    assert len(tts.calls) == 2
    replies = await settled(client, "telegram", 3)
    assert [bool(r.get("attachments")) for r in replies] == [False, False, False, True]


async def test_a_model_answer_streamed_live_is_then_spoken(
    client: Client, telegram: FakeBotApi, tts: FakeTextToSpeech, model: FakeOpenAI
) -> None:
    need_tools()
    chat = 606060
    pieces = ("Our **opening hours** ", "are nine to five, ", "Monday to Friday.")
    model.script(Answer(text=pieces, spacing=0.4))  # written over more than a second
    update = tg_update(7001, "when are you open?", chat)
    assert await tg_post(client, update, bot="writer") == 200
    [voice] = await eventually(lambda: telegram.calls_to("sendVoice"), within=20)
    writes = telegram.writes(chat)
    assert [w.method for w in writes][:1] == ["sendMessage"]  # sent as the model wrote
    assert all(w.method == "editMessageText" for w in writes[1:]) and len(writes) >= 2
    assert writes[-1].at <= voice.at  # the voice after the text's final edit
    [text, note] = telegram.history(chat)
    assert text["text"] == "Our opening hours are nine to five, Monday to Friday."
    assert "voice" in note
    [call] = tts.calls
    assert call.input == "Our opening hours are nine to five, Monday to Friday."


# -- WhatsApp, Twilio, the web ------------------------------------------------------------------


async def test_a_whatsapp_voice_note_gets_an_audio_message_after_the_text(
    client: Client, graph: FakeGraphApi, tts: FakeTextToSpeech
) -> None:
    need_tools()
    graph.add_media("7101", speak(SENTENCE, "ogg"), "audio/ogg")
    assert await wa_post(client, wa_message("wamid.VR1", "hi")) == 200
    await eventually(lambda: graph.sent)
    voice = wa_media(
        "wamid.VR2", "audio", {"id": "7101", "mime_type": "audio/ogg; codecs=opus", "voice": True}
    )
    assert await wa_post(client, wa_notification(messages=[voice])) == 200
    await eventually(lambda: len(graph.sent) == 3, within=20)
    text, audio = graph.sent[1:]
    assert text["text"]["body"] == f"You said: *{HEARD}*"
    [upload] = graph.uploads
    assert (upload.type, upload.data) == ("audio/ogg", tts.spoken[0])
    assert audio["type"] == "audio" and audio["audio"] == {"id": upload.media_id}


async def test_twilio_whatsapp_gets_the_voice_note_as_a_media_url(
    client: Client, twilio: FakeTwilioApi, tts: FakeTextToSpeech
) -> None:
    need_tools()
    audio = speak(SENTENCE, "amr")
    sid = "MM" + "e" * 32
    form = {
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": "whatsapp:+14155550100",
        "To": f"whatsapp:{TWILIO_FROM}",
        "Body": "",
        "NumMedia": "1",
        "MediaUrl0": twilio.add_media(sid, audio, "audio/amr"),
        "MediaContentType0": "audio/amr",
    }
    assert (await twilio_post(client, form)).status == 200
    await eventually(lambda: len(twilio.calls) == 2, within=20)
    text, voice = twilio.calls
    # The note opened the conversation: the greeting answers it, then its voice.
    assert text.form["Body"] == "Hello from relay." and text.media_urls == []
    [url] = voice.media_urls
    assert voice.form["Body"] == ""
    assert await media_bytes(client, url) == tts.spoken[0]
    assert [c.input for c in tts.calls] == ["Hello from relay."]


@pytest.mark.parametrize("voice_replies", ["always"])
async def test_always_answers_the_web_with_a_voice_note_to_play(
    client: Client, tts: FakeTextToSpeech
) -> None:
    need_tools()

    async def say(text: str) -> list[dict[str, Any]]:
        resp = await client.post(
            "/api/v1/bots/relay/messages", json={"user_id": "web-ada", "text": text}, headers=APP
        )
        assert resp.status == 200, await resp.text()
        replies: list[dict[str, Any]] = (await resp.json())["replies"]
        return replies

    text, voice = await say("hi")
    assert text["text"] == "Hello from relay." and not text.get("attachments")
    [file] = voice["attachments"]
    assert (voice["text"], file["kind"], file["content_type"]) == ("", "audio", "audio/ogg")
    assert await media_bytes(client, file["url"]) == tts.spoken[0]
    assert [c.input for c in tts.calls] == ["Hello from relay."]
