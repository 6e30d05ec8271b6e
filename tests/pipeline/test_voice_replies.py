"""Voice replies on real stores (PostgreSQL, the filesystem blob store), a real WhatsApp
adapter against the fake Graph API (for the notes users send) and the real ``openai`` SDK
against fake transcription and speech servers: a voice note is answered with its text and
then a voice note of that text, kept in the blob store; ``voice-replies`` decides when; a
provider that fails costs the voice note, never the text; a retried turn does not speak
twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from channels.base import InboundMessage, MediaKind, OutboundMessage, Suggestion
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher, default_stages
from pipeline.media import MediaIntake
from pipeline.message_path import MessagePath
from pipeline.outbound_files import OutboundFiles
from pipeline.services import Services
from pipeline.turn import Next, Stage, Turn
from pipeline.voice_replies import voice_reply_stage
from storage.services import Stores
from tests.channels.fake_graph import FakeGraphApi
from tests.llm.scripted import Fail, Hang
from tests.pipeline.conftest import Replies
from tests.pipeline.test_voice_stage import (  # noqa: F401 (fixtures)
    FAST,
    HEARD,
    SENTENCE,
    graph,
    message,
    new_user,
    note,
    read_blob,
    whatsapp,
    write_bot,
)
from tests.voice.fake_stt import API_KEY as STT_KEY
from tests.voice.fake_stt import FakeSpeechToText
from tests.voice.fake_tts import API_KEY as TTS_KEY
from tests.voice.fake_tts import FakeTextToSpeech
from tests.voice.speech_samples import need_tools, speak

ECHO = """\
TALK "Hello."
DO WHILE 1 = 1
    HEAR line
    TALK "You said: *" + line + "*"
LOOP
"""
CONFIRM = """\
TALK "Hello."
HEAR line
TALK "You said **" + line + "**. Is that right?"
HEAR answer AS "Yes", "No"
TALK "Noted."
"""
SAID = f"You said: {HEARD}"  # the echo's reply as it is read aloud (no markup)


@pytest.fixture(scope="module")
async def stt() -> AsyncIterator[FakeSpeechToText]:
    fake = FakeSpeechToText(default=HEARD)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
async def tts() -> AsyncIterator[FakeTextToSpeech]:
    fake = FakeTextToSpeech()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(autouse=True)
def fresh_fakes(tts: FakeTextToSpeech, stt: FakeSpeechToText) -> None:
    tts.reset()
    stt.reset(default=HEARD)


def ears(stt: FakeSpeechToText) -> dict[str, str]:
    return {
        "transcription-url": stt.base_url,
        "transcription-key": STT_KEY,
        "transcription-model": "whisper-1",
    }


def mouth(tts: FakeTextToSpeech, when: str) -> dict[str, str]:
    return {
        "voice-replies": when,
        "tts-url": tts.base_url,
        "tts-key": TTS_KEY,
        "tts-model": "gpt-4o-mini-tts",
        "tts-voice": "coral",
        "tts-timeout": "1",
    }


@pytest.fixture(scope="module")
async def registry(
    tmp_path_factory: pytest.TempPathFactory,
    stores: Stores,
    stt: FakeSpeechToText,
    tts: FakeTextToSpeech,
) -> AsyncIterator[BotRegistry]:
    folder = tmp_path_factory.mktemp("voice-reply-bots")
    write_bot(folder, "speaks", ECHO, ears(stt) | mouth(tts, "true"))
    write_bot(folder, "chatty", ECHO, ears(stt) | mouth(tts, "always"))
    write_bot(folder, "quiet", ECHO, ears(stt) | mouth(tts, "false"))
    write_bot(folder, "confirms", CONFIRM, ears(stt) | mouth(tts, "true"))
    bots = BotRegistry(folder, tables=stores.tables, environ={})
    await bots.load_all()
    yield bots
    await bots.close()


@pytest.fixture
def services(stores: Stores, whatsapp) -> Services:  # type: ignore[no-untyped-def]  # noqa: F811
    intake = MediaIntake(stores.blobs, stores.media, lambda bot, channel: whatsapp)
    return Services(
        conversations=stores.conversations,
        locks=stores.locks,
        media=intake,
        files=OutboundFiles(stores.blobs),
    )


def dispatcher(registry: BotRegistry, services: Services, *outside: Stage) -> Dispatcher:
    stages = default_stages()
    # ``outside`` stages wrap the voice-reply stage (between it and the reply stage).
    at = stages.index(voice_reply_stage)
    return Dispatcher(registry, services, stages=[*stages[:at], *outside, *stages[at:]])


async def greeted(d: Dispatcher, bot: str, channel: str = "whatsapp") -> str:
    user = new_user()
    await d.handle(on(channel, message(bot, text="hi", user=user)), Replies())
    return user


def on(channel: str, msg: InboundMessage) -> InboundMessage:
    from dataclasses import replace

    return replace(msg, channel=channel)


def voices(sink: Replies) -> list[OutboundMessage]:
    return [m for m in sink.messages if m.attachments]


async def test_a_voice_note_gets_the_text_then_a_voice_note_of_it(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,  # noqa: F811
    tts: FakeTextToSpeech,
) -> None:
    need_tools()
    graph.add_media("vr-1", speak(SENTENCE, "ogg"), "audio/ogg")
    d = dispatcher(registry, services)
    user = await greeted(d, "speaks")
    sink = Replies()
    turn = await d.handle(message("speaks", note("vr-1"), user=user), sink)
    text, voice = sink.messages
    assert (text.text, text.attachments) == (f"You said: *{HEARD}*", ())
    [audio] = voice.attachments
    assert (voice.text, voice.suggestions) == ("", ())
    assert (audio.kind, audio.content_type, audio.filename) == (
        MediaKind.AUDIO,
        "audio/ogg",
        "reply.ogg",
    )
    # What the provider was asked: the bot's model and voice, the reply read as plain text.
    [call] = tts.calls
    assert (call.model, call.voice, call.input, call.response_format) == (
        "gpt-4o-mini-tts",
        "coral",
        SAID,
        "opus",
    )
    assert audio.key is not None and audio.key.startswith(f"speaks/users/{user}@whatsapp/voice/")
    kept = await read_blob(stores, audio.key)
    assert kept == tts.spoken[0] and kept.startswith(b"OggS") and audio.size == len(kept)
    # The history keeps both, the voice note as a file of the bot's.
    assert turn.session is not None
    rows = await stores.conversations.history(turn.session.id)
    assert [(r.role, r.content, [a.key for a in r.attachments]) for r in rows[-2:]] == [
        ("assistant", f"You said: *{HEARD}*", []),
        ("assistant", "", [audio.key]),
    ]


async def test_true_speaks_to_voice_notes_and_always_to_everything(
    registry: BotRegistry, services: Services, tts: FakeTextToSpeech
) -> None:
    need_tools()
    d = dispatcher(registry, services)
    for bot, spoken in (("speaks", 0), ("quiet", 0), ("chatty", 1)):
        user = await greeted(d, bot)
        tts.reset()
        sink = Replies()
        await d.handle(message(bot, text="pizza", user=user), sink)
        assert sink.texts[0] == "You said: *pizza*", bot
        assert (len(voices(sink)), len(tts.calls)) == (spoken, spoken), bot
    assert tts.calls[0].input == "You said: pizza"


async def test_false_sends_no_voice_note_to_a_voice_note(
    registry: BotRegistry,
    services: Services,
    graph: FakeGraphApi,  # noqa: F811
    tts: FakeTextToSpeech,
) -> None:
    need_tools()
    graph.add_media("vr-quiet", speak(SENTENCE, "ogg"), "audio/ogg")
    d = dispatcher(registry, services)
    user = await greeted(d, "quiet")
    sink = Replies()
    await d.handle(message("quiet", note("vr-quiet"), user=user), sink)
    assert sink.texts == [f"You said: *{HEARD}*"]
    assert tts.calls == []


async def test_channels_that_take_no_voice_notes_get_the_text_alone(
    registry: BotRegistry, services: Services, tts: FakeTextToSpeech
) -> None:
    d = dispatcher(registry, services)
    for channel in ("twilio-sms", "generic"):
        user = await greeted(d, "chatty", channel)
        tts.reset()
        sink = Replies()
        await d.handle(on(channel, message("chatty", text="pizza", user=user)), sink)
        assert sink.texts == ["You said: *pizza*"], channel
        assert tts.calls == [], channel


async def test_twilio_with_no_public_address_gets_no_dead_link(
    registry: BotRegistry,
    services: Services,
    tts: FakeTextToSpeech,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twilio fetches the files it sends: with no public URL to give it, no voice note is
    made (the delivery would have sent "this file could not be sent" instead)."""
    d = dispatcher(registry, services)  # its files have no public URLs
    user = await greeted(d, "chatty", "twilio-whatsapp")
    tts.reset()
    caplog.clear()
    sink = Replies()
    with caplog.at_level(logging.WARNING, logger="pipeline.voice_replies"):
        await d.handle(on("twilio-whatsapp", message("chatty", text="pizza", user=user)), sink)
    assert sink.texts == ["You said: *pizza*"]
    assert tts.calls == []
    [warning] = [r.getMessage() for r in caplog.records]
    assert "BOTSERVER_PUBLIC_URL" in warning


async def test_the_buttons_stay_on_the_text_and_the_voice_note_comes_after(
    registry: BotRegistry,
    services: Services,
    graph: FakeGraphApi,  # noqa: F811
    tts: FakeTextToSpeech,
) -> None:
    need_tools()
    graph.add_media("vr-confirm", speak(SENTENCE, "ogg"), "audio/ogg")
    d = dispatcher(registry, services)
    user = await greeted(d, "confirms")
    sink = Replies()
    await d.handle(message("confirms", note("vr-confirm"), user=user), sink)
    text, voice = sink.messages
    assert text.text == f"You said **{HEARD}**. Is that right?"
    assert text.suggestions == (Suggestion("Yes", "Yes"), Suggestion("No", "No"))
    assert voice.attachments and voice.suggestions == ()
    assert tts.calls[0].input == f"You said {HEARD}. Is that right?"


@pytest.mark.parametrize(
    "outcome",
    [
        Fail(500, "The server had an error"),
        Fail(503, "overloaded"),
        Fail(429, "Rate limit reached"),
        Fail(400, "Invalid voice"),
        Hang(5.0),  # past the bot's tts-timeout of 1 s
        b"ID3\x04not an ogg file",
    ],
    ids=["500", "503", "429", "400", "timeout", "not-ogg"],
)
async def test_a_provider_that_fails_costs_the_voice_note_not_the_text(
    registry: BotRegistry,
    services: Services,
    graph: FakeGraphApi,  # noqa: F811
    tts: FakeTextToSpeech,
    outcome: Fail | Hang | bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    need_tools()
    graph.add_media("vr-out", speak(SENTENCE, "ogg"), "audio/ogg")
    d = dispatcher(registry, services)
    user = await greeted(d, "speaks")
    tts.script(outcome)
    sink = Replies()
    with caplog.at_level(logging.WARNING, logger="pipeline.voice_replies"):
        await d.handle(message("speaks", note("vr-out"), user=user), sink)
    assert sink.texts == [f"You said: *{HEARD}*"]
    assert voices(sink) == []
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("voice reply: not spoken channel=whatsapp bot=speaks message=wamid.")
    # The conversation goes on, and the voice with it once the provider is back.
    sink = Replies()
    await d.handle(message("speaks", note("vr-out"), user=user), sink)
    assert sink.texts == [f"You said: *{HEARD}*", ""]
    assert len(voices(sink)) == 1


async def test_a_provider_refusing_connections_is_an_outage_too(
    tmp_path: Path, stores: Stores, services: Services, stt: FakeSpeechToText
) -> None:
    """A provider that refuses connections is an outage like any other."""
    write_bot(
        tmp_path,
        "gone",
        ECHO,
        ears(stt) | {"voice-replies": "always", "tts-url": "http://127.0.0.1:9/v1"},
    )
    bots = BotRegistry(tmp_path, tables=stores.tables, environ={})
    await bots.load_all()
    try:
        d = Dispatcher(bots, services)
        user = new_user()
        await d.handle(message("gone", text="hi", user=user), Replies())
        sink = Replies()
        await d.handle(message("gone", text="pizza", user=user), sink)
        assert sink.texts == ["You said: *pizza*"]
    finally:
        await bots.close()


async def test_no_provider_configured_warns_once_at_load_and_sends_text(
    tmp_path: Path,
    stores: Stores,
    services: Services,
    graph: FakeGraphApi,  # noqa: F811
    stt: FakeSpeechToText,
    caplog: pytest.LogCaptureFixture,
) -> None:
    need_tools()
    write_bot(tmp_path, "mute", ECHO, ears(stt) | {"voice-replies": "true"})
    bots = BotRegistry(tmp_path, tables=stores.tables, environ={})
    with caplog.at_level(logging.WARNING):
        await bots.load_all()
    try:
        assert [r.getMessage() for r in caplog.records if "voice replies" in r.getMessage()] == [
            "bot mute: voice replies off: no text-to-speech provider is configured (tts-url and"
            " tts-key in config.csv, or OPENAI_API_KEY in the environment); replies go as text"
        ]
        caplog.clear()
        graph.add_media("vr-mute", speak(SENTENCE, "ogg"), "audio/ogg")
        d = Dispatcher(bots, services)
        user = new_user()
        await d.handle(message("mute", text="hi", user=user), Replies())
        sink = Replies()
        with caplog.at_level(logging.WARNING):
            await d.handle(message("mute", note("vr-mute"), user=user), sink)
        assert sink.texts == [f"You said: *{HEARD}*"]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        await bots.close()


async def test_a_retried_turn_reuses_the_voice_note(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,  # noqa: F811
    tts: FakeTextToSpeech,
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    graph.add_media("vr-retry", speak(SENTENCE, "ogg"), "audio/ogg")
    failures = [RuntimeError("the store hiccuped after the reply was spoken")]

    async def fail_once_after(turn: Turn, next_: Next) -> None:
        await next_(turn)
        if failures:
            raise failures.pop()

    path = MessagePath(dispatcher(registry, services, fail_once_after), stores.inbox, policy=FAST)
    user = await greeted(dispatcher(registry, services), "speaks")
    msg = message("speaks", note("vr-retry"), user=user)
    path.start()
    try:
        assert await path.accept(msg)
        for _ in range(200):
            if await stores.inbox.status("speaks", "whatsapp", msg.external_id) == "done":
                break
            await asyncio.sleep(0.05)
    finally:
        await path.stop()
    assert await stores.inbox.status("speaks", "whatsapp", msg.external_id) == "done"
    assert path.counters.retried == 1
    assert len(tts.calls) == 1  # spoken once over two runs
    assert len(stt.calls) == 1
    session = await stores.conversations.find_active(
        bot_id="speaks", channel="whatsapp", user_id=msg.conversation
    )
    assert session is not None
    rows = await stores.conversations.history(session.id)
    [voice_row] = [r for r in rows if r.attachments and r.role == "assistant"]
    [attachment] = voice_row.attachments
    assert attachment.key is not None
    assert await read_blob(stores, attachment.key) == tts.spoken[0]
