"""The voice stage on real stores (PostgreSQL, the filesystem blob store), a real WhatsApp
adapter against the fake Graph API and the real ``openai`` SDK against a fake
transcription server: a voice note is the user's text for the dialog, kept beside the
audio and noted on the history; a retried turn does not transcribe again; each thing that
can go wrong ends the way the user and the operator expect."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from channels.base import Attachment, InboundMessage, MediaKind, MediaSource
from channels.whatsapp import WhatsAppChannel
from gateway.app import build_services
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher, default_stages
from pipeline.errors import TurnFailed
from pipeline.mail import MailSettings
from pipeline.media import MediaIntake
from pipeline.message_path import MessagePath, PathPolicy
from pipeline.outbound_http import OutboundHttp
from pipeline.services import Services
from pipeline.speech_local import installed as offline_installed
from pipeline.turn import Next, Stage, Turn
from pipeline.voice import REPLIES, transcript_key, voice_stage
from storage.base import HistoryEntry
from storage.services import Stores
from tests.channels.fake_graph import PHONE_NUMBER_ID, FakeGraphApi
from tests.channels.fake_graph import TOKEN as GRAPH_TOKEN
from tests.llm.scripted import Fail
from tests.pipeline.conftest import Replies
from tests.voice.fake_stt import API_KEY, FakeSpeechToText
from tests.voice.speech_samples import need_tools, silence, speak

ECHO = """\
TALK "Hello."
DO WHILE 1 = 1
    HEAR line
    TALK "You said: " + line
LOOP
"""
ASK_FOR_A_NOTE = """\
TALK "Send me a voice note."
HEAR note AS AUDIO
TALK "Heard: " + note
"""
SENTENCE = "Please book a table for two at seven tonight"
HEARD = "Please book a table for two at seven tonight."
FAST = PathPolicy(workers=4, lease=5.0, poll_interval=0.05, backoff_base=0.05, backoff_cap=0.2)


@pytest.fixture(scope="module")
async def stt() -> AsyncIterator[FakeSpeechToText]:
    fake = FakeSpeechToText()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(autouse=True)
def fresh_stt(stt: FakeSpeechToText) -> None:
    stt.reset()


def write_bot(folder: Path, name: str, dialog: str, config: dict[str, str]) -> None:
    (folder / f"{name}.gbai" / f"{name}.gbdialog").mkdir(parents=True)
    (folder / f"{name}.gbai" / f"{name}.gbdialog" / "start.bas").write_text(dialog)
    (folder / f"{name}.gbai" / f"{name}.gbot").mkdir()
    rows = "".join(f"{k},{v}\n" for k, v in config.items())
    (folder / f"{name}.gbai" / f"{name}.gbot" / "config.csv").write_text("name,value\n" + rows)


@pytest.fixture(scope="module")
async def registry(
    tmp_path_factory: pytest.TempPathFactory, stores: Stores, stt: FakeSpeechToText
) -> AsyncIterator[BotRegistry]:
    folder = tmp_path_factory.mktemp("voice-bots")
    ears = {
        "transcription-url": stt.base_url,
        "transcription-key": API_KEY,
        "transcription-model": "whisper-1",
        "transcription-language": "en-US",
        "transcription-max-duration": "10",
    }
    write_bot(folder, "echo", ECHO, ears)
    write_bot(folder, "asks", ASK_FOR_A_NOTE, ears)
    write_bot(folder, "deaf", ECHO, {})
    bots = BotRegistry(folder, tables=stores.tables, environ={})
    await bots.load_all()
    yield bots
    await bots.close()


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphApi]:
    fake = FakeGraphApi()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def whatsapp(graph: FakeGraphApi) -> AsyncIterator[MediaSource]:
    channel = WhatsAppChannel(
        access_token=GRAPH_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        app_secret="secret",
        api_url=graph.api_url,
    )
    yield channel
    await channel.close()


@pytest.fixture
def services(stores: Stores, whatsapp: MediaSource) -> Services:
    intake = MediaIntake(stores.blobs, stores.media, lambda bot, channel: whatsapp)
    return Services(conversations=stores.conversations, locks=stores.locks, media=intake)


def dispatcher(registry: BotRegistry, services: Services, *extra: Stage) -> Dispatcher:
    stages = default_stages()
    # Extra stages run right after the voice stage.
    at = stages.index(voice_stage) + 1
    return Dispatcher(registry, services, stages=[*stages[:at], *extra, *stages[at:]])


def note(media_id: str, *, caption: str | None = None, mime: str = "audio/ogg") -> Attachment:
    return Attachment(
        kind=MediaKind.AUDIO,
        content_type=f"{mime}; codecs=opus" if mime == "audio/ogg" else mime,
        provider_id=media_id,
        caption=caption,
    )


def new_user() -> str:
    return f"5511{uuid.uuid4().int % 10**9:09d}"


async def greeted(d: Dispatcher, bot: str) -> str:
    """A user whose conversation has started (its dialog waits on HEAR)."""
    user = new_user()
    await d.handle(message(bot, text="hi", user=user), Replies())
    return user


def message(
    bot: str, *attachments: Attachment, text: str = "", user: str | None = None
) -> InboundMessage:
    user = user or new_user()
    return InboundMessage(
        channel="whatsapp",
        bot=bot,
        conversation=user,
        sender=user,
        external_id=f"wamid.{uuid.uuid4().hex}",
        text=text,
        attachments=attachments,
    )


async def read_blob(stores: Stores, key: str) -> bytes:
    async with stores.blobs.open(key) as reader:
        return b"".join([c async for c in reader.chunks()])


async def user_rows(stores: Stores, turn: Turn) -> list[HistoryEntry]:
    assert turn.session is not None
    return [e for e in await stores.conversations.history(turn.session.id) if e.role == "user"]


async def test_a_voice_note_is_what_the_user_said(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    audio = speak(SENTENCE, "ogg")
    graph.add_media("v-1", audio, "audio/ogg")
    stt.script(HEARD)
    sink = Replies()
    d = dispatcher(registry, services)
    user = await greeted(d, "echo")
    turn = await d.handle(message("echo", note("v-1"), user=user), sink)
    assert sink.texts == [f"You said: {HEARD}"]
    [call] = stt.calls
    assert (call.filename, call.format_name, call.fields["language"]) == ("voice.ogg", "ogg", "en")
    assert call.data == audio  # OGG/Opus goes as it came
    [stored] = turn.media
    assert await read_blob(stores, stored.key) == audio
    assert await read_blob(stores, transcript_key(stored.key)) == HEARD.encode()
    row = (await user_rows(stores, turn))[-1]
    assert row.content == HEARD
    [attachment] = row.attachments
    assert (attachment.kind, attachment.key, attachment.transcript) == ("audio", stored.key, HEARD)


@pytest.mark.parametrize(
    ("fmt", "mime", "sent_as"),
    [
        ("amr", "audio/amr", "voice.wav"),
        ("m4a", "audio/mp4", "voice.m4a"),
        ("mp3", "audio/mpeg", "voice.mp3"),
    ],
)
async def test_other_formats_phones_send(
    registry: BotRegistry,
    services: Services,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
    fmt: str,
    mime: str,
    sent_as: str,
) -> None:
    need_tools()
    graph.add_media(f"v-{fmt}", speak(SENTENCE, fmt), mime)
    stt.script(HEARD)
    sink = Replies()
    d = dispatcher(registry, services)
    user = await greeted(d, "echo")
    await d.handle(message("echo", note(f"v-{fmt}", mime=mime), user=user), sink)
    assert sink.texts == [f"You said: {HEARD}"]
    assert [c.filename for c in stt.calls] == [sent_as]


async def test_the_caption_comes_first(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    graph.add_media("v-cap", speak(SENTENCE, "ogg"), "audio/ogg")
    stt.script(HEARD)
    sink = Replies()
    d = dispatcher(registry, services)
    user = await greeted(d, "echo")
    msg = message("echo", note("v-cap", caption="for Friday"), text="for Friday", user=user)
    turn = await d.handle(msg, sink)
    assert sink.texts == [f"You said: for Friday\n\n{HEARD}"]
    row = (await user_rows(stores, turn))[-1]
    assert row.content == f"for Friday\n\n{HEARD}"
    assert row.attachments[0].caption == "for Friday"


async def test_hear_as_audio_gets_the_transcript(
    registry: BotRegistry, services: Services, graph: FakeGraphApi, stt: FakeSpeechToText
) -> None:
    need_tools()
    graph.add_media("v-hear", speak(SENTENCE, "ogg"), "audio/ogg")
    stt.script(HEARD)
    d = dispatcher(registry, services)
    user = "5511900000001"
    sink = Replies()
    await d.handle(message("asks", text="hi", user=user), sink)
    await d.handle(message("asks", text="just typing", user=user), sink)  # not a voice note
    await d.handle(message("asks", note("v-hear"), user=user), sink)
    assert sink.texts == ["Send me a voice note.", "Please try again.", f"Heard: {HEARD}"]


async def test_a_retried_turn_reuses_the_transcript(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    graph.add_media("v-retry", speak(SENTENCE, "ogg"), "audio/ogg")
    stt.script(HEARD)
    failures = [RuntimeError("the store hiccuped after the note was heard")]

    async def fail_once(turn: Turn, next_: Next) -> None:
        if failures:
            raise failures.pop()
        await next_(turn)

    path = MessagePath(dispatcher(registry, services, fail_once), stores.inbox, policy=FAST)
    user = await greeted(dispatcher(registry, services), "echo")
    msg = message("echo", note("v-retry"), user=user)
    path.start()
    try:
        assert await path.accept(msg)
        for _ in range(200):
            if await stores.inbox.status("echo", "whatsapp", msg.external_id) == "done":
                break
            await asyncio.sleep(0.05)
    finally:
        await path.stop()
    assert await stores.inbox.status("echo", "whatsapp", msg.external_id) == "done"
    assert path.counters.retried == 1
    assert len(stt.calls) == 1  # heard once over two runs
    assert graph.downloads == {"v-retry": 1}
    session = await stores.conversations.find_active(
        bot_id="echo", channel="whatsapp", user_id=msg.conversation
    )
    assert session is not None
    history = await stores.conversations.history(session.id)
    assert [(e.role, e.content) for e in history][-2:] == [
        ("user", HEARD),
        ("assistant", f"You said: {HEARD}"),
    ]


@pytest.mark.parametrize(
    "failure", [Fail(500, "The server had an error"), Fail(503, "busy"), Fail(429, "slow down")]
)
async def test_a_provider_outage_fails_the_turn_to_be_run_again(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
    failure: Fail,
) -> None:
    need_tools()
    graph.add_media("v-5xx", speak(SENTENCE, "ogg"), "audio/ogg")
    stt.script(failure, HEARD)
    user = f"5511{uuid.uuid4().int % 10**9:09d}"
    msg = message("asks", text="hi", user=user)
    await dispatcher(registry, services).handle(msg, Replies())  # the dialog waits on HEAR
    voice_msg = message("asks", note("v-5xx"), user=user)
    with pytest.raises(TurnFailed) as caught:
        await dispatcher(registry, services).handle(voice_msg, Replies())
    assert str(failure.status) in str(caught.value.__cause__)
    [record] = await stores.media.find("asks", "whatsapp", voice_msg.external_id)
    assert await stores.blobs.stat(transcript_key(record.key)) is None
    sink = Replies()
    await dispatcher(registry, services).handle(voice_msg, sink)  # the retry: the dialog was kept
    assert sink.texts == [f"Heard: {HEARD}"]
    assert len(stt.calls) == 2


async def test_a_provider_refusing_the_note_gets_a_clear_reply(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
    caplog: pytest.LogCaptureFixture,
) -> None:
    need_tools()
    graph.add_media("v-4xx", speak(SENTENCE, "ogg"), "audio/ogg")
    stt.script(Fail(400, "Audio file could not be decoded"))
    sink = Replies()
    d = dispatcher(registry, services)
    user = await greeted(d, "echo")
    turn = await d.handle(message("echo", note("v-4xx"), user=user), sink)
    assert sink.texts == [REPLIES["refused"]]
    assert "could not be decoded" in caplog.text
    row = (await user_rows(stores, turn))[-1]
    assert (row.content, row.attachments[0].transcript) == ("", None)
    assert row.attachments[0].key is not None  # the audio is kept all the same


async def test_no_provider_says_what_the_bot_needs_and_the_turn_ends(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if offline_installed():
        pytest.skip("the offline speech extra is installed: it is every bot's engine then")
    graph.add_media("v-deaf", b"OggS any audio", "audio/ogg")
    sink = Replies()
    d = dispatcher(registry, services)
    user = await greeted(d, "deaf")
    turn = await d.handle(message("deaf", note("v-deaf"), user=user), sink)
    assert sink.texts == [REPLIES["no_engine"]]
    assert "speech-to-text service" in sink.texts[0]
    assert "no speech-to-text provider is configured" in caplog.text
    row = (await user_rows(stores, turn))[-1]
    assert row.attachments[0].key is not None
    # With text beside the note, the turn goes on with it.
    graph.add_media("v-deaf-2", b"OggS any audio", "audio/ogg")
    sink = Replies()
    msg = message("deaf", note("v-deaf-2", caption="call me"), text="call me", user=user)
    await d.handle(msg, sink)
    assert sink.texts == [REPLIES["no_engine"], "You said: call me"]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("cut short", lambda: speak(SENTENCE, "ogg")[:1500]),
        ("random bytes", lambda: bytes(range(256)) * 40),
        ("a JPEG sent as a voice note", lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(3000)),
        ("empty", lambda: b""),
    ],
)
async def test_audio_that_cannot_be_played_gets_a_clear_reply(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
    caplog: pytest.LogCaptureFixture,
    name: str,
    data: object,
) -> None:
    need_tools()
    media_id = f"v-bad-{uuid.uuid4().hex[:6]}"
    graph.add_media(media_id, data(), "audio/ogg")  # type: ignore[operator]
    sink = Replies()
    d = dispatcher(registry, services)
    user = await greeted(d, "echo")
    turn = await d.handle(message("echo", note(media_id), user=user), sink)
    assert sink.texts == [REPLIES["unreadable"]]
    assert stt.calls == []  # nothing sent to the provider
    assert "voice: unreadable audio" in caplog.text
    assert turn.transcripts == {}


async def test_a_note_over_the_limit_gets_a_clear_reply(
    registry: BotRegistry, services: Services, graph: FakeGraphApi, stt: FakeSpeechToText
) -> None:
    need_tools()
    graph.add_media("v-long", speak(SENTENCE, "ogg", pad_seconds=12), "audio/ogg")
    sink = Replies()
    d = dispatcher(registry, services)
    user = await greeted(d, "echo")
    await d.handle(message("echo", note("v-long"), user=user), sink)
    assert sink.texts == [REPLIES["too_long"].format(limit="10 seconds")]
    assert stt.calls == []


async def test_a_note_with_no_words_gets_a_clear_reply(
    registry: BotRegistry, services: Services, graph: FakeGraphApi, stt: FakeSpeechToText
) -> None:
    need_tools()
    graph.add_media("v-silent", silence(3.0, "ogg"), "audio/ogg")
    stt.script("")
    sink = Replies()
    d = dispatcher(registry, services)
    user = await greeted(d, "echo")
    await d.handle(message("echo", note("v-silent"), user=user), sink)
    assert sink.texts == [REPLIES["silent"]]
    assert len(stt.calls) == 1


async def test_the_worker_keeps_serving_after_bad_audio(
    registry: BotRegistry,
    services: Services,
    stores: Stores,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    graph.add_media("v-junk", b"\x00" * 5000, "audio/ogg")
    graph.add_media("v-good", speak(SENTENCE, "ogg"), "audio/ogg")
    stt.script(HEARD)
    path = MessagePath(dispatcher(registry, services), stores.inbox, policy=FAST)
    d = dispatcher(registry, services)
    bad = message("echo", note("v-junk"), user=await greeted(d, "echo"))
    good = message("echo", note("v-good"), user=await greeted(d, "echo"))
    path.start()
    try:
        assert await path.accept(bad)
        assert await path.accept(good)
        for _ in range(200):
            statuses = [
                await stores.inbox.status("echo", "whatsapp", m.external_id) for m in (bad, good)
            ]
            if statuses == ["done", "done"]:
                break
            await asyncio.sleep(0.05)
    finally:
        await path.stop()
    assert statuses == ["done", "done"]
    assert path.counters.retried == 0


CONCIERGE = """\
TALK "Hello."
HEAR request
result = TRANSFER TO HUMAN "support", "high", "asked for a person"
TALK "A person will be with you shortly."
HEAR after
TALK "Welcome back! You said: " + after
"""


async def test_with_a_person_the_transcript_is_theirs_and_the_bot_says_nothing(
    tmp_path: Path,
    stores: Stores,
    services: Services,
    graph: FakeGraphApi,
    stt: FakeSpeechToText,
    http_client: OutboundHttp,
) -> None:
    need_tools()
    write_bot(
        tmp_path,
        "desk",
        CONCIERGE,
        {
            "crm-enabled": "true",
            "transcription-url": stt.base_url,
            "transcription-key": API_KEY,
            "transcription-model": "whisper-1",
        },
    )
    bots = BotRegistry(tmp_path, tables=stores.tables, environ={})
    await bots.load_all()
    try:
        with_desk = replace(
            build_services(stores, http_client, mail=MailSettings(), bots=bots),
            media=services.media,
        )
        d = dispatcher(bots, with_desk)
        user = new_user()
        await d.handle(message("desk", text="hi", user=user), Replies())
        transferred = Replies()
        await d.handle(message("desk", text="a person please", user=user), transferred)
        assert transferred.texts == ["A person will be with you shortly."]
        graph.add_media("v-held", speak(SENTENCE, "ogg"), "audio/ogg")
        graph.add_media("v-held-bad", b"\x00" * 4000, "audio/ogg")
        stt.script(HEARD)
        held, bad = Replies(), Replies()
        turn = await d.handle(message("desk", note("v-held"), user=user), held)
        assert turn.held and held.texts == []  # the person answers, not the bot
        assert (await user_rows(stores, turn))[-1].content == HEARD
        turn = await d.handle(message("desk", note("v-held-bad"), user=user), bad)
        assert turn.held and bad.texts == []  # not even to say the note was unreadable
        assert len(stt.calls) == 1
    finally:
        await bots.close()
