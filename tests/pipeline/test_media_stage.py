"""The media stage on real stores (PostgreSQL, the filesystem blob store) with real channel
adapters against fake providers: every attachment fetched once, kept under the user's
folder, noted on the history row; limits, expired media and provider failures each end
the way the user and the operator expect."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from channels.base import Attachment, InboundMessage, MediaKind, MediaSource
from channels.generic import GenericChannel
from channels.whatsapp import WhatsAppChannel
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher, default_stages
from pipeline.errors import TurnFailed
from pipeline.media import MediaIntake, media_stage
from pipeline.message_path import MessagePath, PathPolicy
from pipeline.services import Services
from pipeline.speech_local import installed as offline_installed
from pipeline.turn import Next, Stage, Turn
from pipeline.voice import NO_ENGINE, REPLIES, UNREADABLE
from storage.services import Stores
from tests.channels.fake_graph import PHONE_NUMBER_ID, FakeGraphApi
from tests.channels.fake_graph import TOKEN as GRAPH_TOKEN
from tests.pipeline.conftest import Replies

MiB = 1024 * 1024
BOT = "mediabot"
ECHO = """\
TALK "Hello."
DO WHILE 1 = 1
    HEAR line
    TALK "You said: " + line
LOOP
"""
FAST = PathPolicy(workers=4, lease=5.0, poll_interval=0.05, backoff_base=0.05, backoff_cap=0.2)


@pytest.fixture(scope="module")
async def registry(tmp_path_factory: pytest.TempPathFactory, stores: Stores) -> BotRegistry:
    folder = tmp_path_factory.mktemp("media-bots")
    dialogs = folder / f"{BOT}.gbai" / f"{BOT}.gbdialog"
    dialogs.mkdir(parents=True)
    (dialogs / "start.bas").write_text(ECHO)
    bots = BotRegistry(folder, tables=stores.tables, environ={})
    await bots.load_all()
    return bots


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphApi]:
    fake = FakeGraphApi()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def sources(graph: FakeGraphApi) -> AsyncIterator[dict[str, MediaSource]]:
    whatsapp = WhatsAppChannel(
        access_token=GRAPH_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        app_secret="secret",
        api_url=graph.api_url,
    )
    generic = GenericChannel(secret="s" * 16, callback_url="https://x.test/cb", allow_private=True)
    yield {"whatsapp": whatsapp, "generic": generic}
    await whatsapp.close()
    await generic.close()


@pytest.fixture
def services(stores: Stores, sources: dict[str, MediaSource]) -> Services:
    intake = MediaIntake(stores.blobs, stores.media, lambda bot, channel: sources.get(channel))
    return Services(conversations=stores.conversations, locks=stores.locks, media=intake)


def dispatcher(registry: BotRegistry, services: Services, *extra: Stage) -> Dispatcher:
    stages = default_stages()
    # Extra stages run right after the media stage.
    at = stages.index(media_stage) + 1
    return Dispatcher(registry, services, stages=[*stages[:at], *extra, *stages[at:]])


def voice(media_id: str, *, caption: str | None = None) -> Attachment:
    return Attachment(
        kind=MediaKind.AUDIO,
        content_type="audio/ogg; codecs=opus",
        provider_id=media_id,
        caption=caption,
    )


def message(
    *attachments: Attachment, channel: str = "whatsapp", text: str = "", user: str | None = None
) -> InboundMessage:
    user = user or f"5511{uuid.uuid4().int % 10**9:09d}"
    return InboundMessage(
        channel=channel,
        bot=BOT,
        conversation=user,
        sender=user,
        external_id=f"wamid.{uuid.uuid4().hex}",
        text=text,
        attachments=attachments,
    )


async def read_blob(stores: Stores, key: str) -> bytes:
    async with stores.blobs.open(key) as reader:
        return b"".join([c async for c in reader.chunks()])


async def user_row(stores: Stores, turn: Turn) -> object:
    assert turn.session is not None
    history = await stores.conversations.history(turn.session.id)
    return next(e for e in history if e.role == "user")


async def test_a_voice_note_is_stored_in_the_users_folder_and_noted_on_the_history(
    registry: BotRegistry, services: Services, stores: Stores, graph: FakeGraphApi
) -> None:
    data = os.urandom(MiB + 333)
    graph.add_media("1037543291543636", data, "audio/ogg")
    sink = Replies()
    msg = message(voice("1037543291543636", caption="listen"), text="listen")
    turn = await dispatcher(registry, services).handle(msg, sink)
    # The voice stage cannot hear these random bytes (no speech-to-text configured, or, with
    # the offline engine, no audio in them): it says so, and the turn goes on to the dialog
    # with the note's caption.
    assert sink.texts == [REPLIES[UNREADABLE if offline_installed() else NO_ENGINE], "Hello."]
    [stored] = turn.media
    assert stored.key == (
        f"{BOT}/users/{msg.conversation}@whatsapp/inbox/{msg.external_id}/0-audio.ogg"
    )
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert stored.content_type == "audio/ogg"
    assert await read_blob(stores, stored.key) == data
    row = await user_row(stores, turn)
    [note] = row.attachments  # type: ignore[attr-defined]
    assert (note.kind, note.key, note.content_type, note.size, note.caption) == (
        "audio",
        stored.key,
        "audio/ogg",
        len(data),
        "listen",
    )
    [record] = await stores.media.find(BOT, "whatsapp", msg.external_id)
    assert (record.key, record.user_id, record.sha256) == (
        stored.key,
        msg.conversation,
        stored.sha256,
    )


async def test_a_turn_run_again_does_not_fetch_what_it_stored_the_first_time(
    registry: BotRegistry, services: Services, stores: Stores, graph: FakeGraphApi
) -> None:
    graph.add_media("m-first", b"first file", "audio/ogg")
    graph.add_media("m-second", b"second file", "audio/ogg")
    failures = [RuntimeError("the store hiccuped after the media was kept")]

    async def fail_once(turn: Turn, next_: Next) -> None:
        if failures:
            raise failures.pop()
        await next_(turn)

    path = MessagePath(dispatcher(registry, services, fail_once), stores.inbox, policy=FAST)
    msg = message(voice("m-first"), voice("m-second"))
    path.start()
    try:
        assert await path.accept(msg)
        for _ in range(200):
            if await stores.inbox.status(BOT, "whatsapp", msg.external_id) == "done":
                break
            await asyncio.sleep(0.05)
    finally:
        await path.stop()
    assert await stores.inbox.status(BOT, "whatsapp", msg.external_id) == "done"
    assert path.counters.retried == 1
    assert graph.downloads == {"m-first": 1, "m-second": 1}  # once each, over two runs
    assert graph.lookups == {"m-first": 1, "m-second": 1}
    records = await stores.media.find(BOT, "whatsapp", msg.external_id)
    assert [await read_blob(stores, r.key) for r in records] == [b"first file", b"second file"]


async def test_a_provider_failure_fails_the_turn_to_be_run_again(
    registry: BotRegistry, services: Services, stores: Stores, graph: FakeGraphApi
) -> None:
    graph.add_media("m-5xx", b"later", "audio/ogg")
    graph.media_failures.append(500)
    msg = message(voice("m-5xx"))
    with pytest.raises(TurnFailed):
        await dispatcher(registry, services).handle(msg, Replies())
    assert await stores.media.find(BOT, "whatsapp", msg.external_id) == []
    turn = await dispatcher(registry, services).handle(msg, Replies())  # the retry
    assert [m.size for m in turn.media] == [5]


async def test_a_file_that_does_not_match_metas_digest_is_not_kept(
    registry: BotRegistry, services: Services, stores: Stores, graph: FakeGraphApi
) -> None:
    graph.add_media("m-corrupt", b"bytes damaged on the way", "audio/ogg")
    graph.wrong_sha256.add("m-corrupt")
    msg = message(voice("m-corrupt"))
    with pytest.raises(TurnFailed) as caught:
        await dispatcher(registry, services).handle(msg, Replies())
    assert "SHA-256" in str(caught.value.__cause__)
    assert await stores.media.find(BOT, "whatsapp", msg.external_id) == []
    key = f"{BOT}/users/{msg.conversation}@whatsapp/inbox/{msg.external_id}/0-audio.ogg"
    assert await stores.blobs.stat(key) is None


async def test_expired_media_gets_a_clear_reply_and_the_turn_goes_on(
    registry: BotRegistry, services: Services, stores: Stores, graph: FakeGraphApi
) -> None:
    graph.add_media("m-old", b"voice", "audio/ogg")
    graph.expired.add("m-old")
    sink = Replies()
    msg = message(voice("m-old"), voice("m-unknown"))
    turn = await dispatcher(registry, services).handle(msg, sink)  # no TurnFailed: no retry
    assert sink.texts == [
        "I couldn't download the file you sent (the link may have expired). "
        "Could you send it again?",
        "Hello.",
    ]
    assert turn.media == []
    row = await user_row(stores, turn)
    assert [(a.kind, a.key, a.error) for a in row.attachments] == [  # type: ignore[attr-defined]
        ("audio", None, "gone"),
        ("audio", None, "gone"),
    ]


async def test_an_image_over_whatsapps_limit_is_refused_before_downloading(
    registry: BotRegistry, services: Services, stores: Stores, graph: FakeGraphApi
) -> None:
    graph.add_media("m-huge", b"x" * (5 * MiB + 1), "image/jpeg")
    sink = Replies()
    photo = Attachment(kind=MediaKind.IMAGE, content_type="image/jpeg", provider_id="m-huge")
    turn = await dispatcher(registry, services).handle(message(photo), sink)
    assert sink.texts[0] == (
        "That file is too large for me: images on whatsapp can be at most 5 MB. "
        "Could you send a smaller one?"
    )
    assert graph.downloads == {}
    row = await user_row(stores, turn)
    assert [a.error for a in row.attachments] == ["too_large"]  # type: ignore[attr-defined]


@dataclass
class Sender:
    """A sender's server that streams a file of no declared size, 64 MiB long."""

    url: str = ""
    sent: int = 0


@pytest.fixture
async def endless_sender() -> AsyncIterator[Sender]:
    sender = Sender()

    async def serve(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = b"%" * (256 * 1024)
        try:
            for _ in range(64 * 4):
                await response.write(block)
                sender.sent += len(block)
        except ConnectionError:
            return response
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/big.pdf", serve)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sender.url = f"http://127.0.0.1:{runner.addresses[0][1]}/big.pdf"
    yield sender
    await runner.cleanup()


async def test_a_file_past_the_limit_is_cut_off_while_streaming_and_nothing_is_kept(
    registry: BotRegistry, services: Services, stores: Stores, endless_sender: Sender
) -> None:
    doc = Attachment(kind=MediaKind.DOCUMENT, url=endless_sender.url, filename="big.pdf")
    sink = Replies()
    msg = message(doc, channel="generic", text="here")
    turn = await dispatcher(registry, services).handle(msg, sink)
    assert sink.texts == [
        "That file is too large for me: documents on generic can be at most 16 MB. "
        "Could you send a smaller one?",
        "Hello.",
    ]
    assert turn.media == []
    assert await stores.media.find(BOT, "generic", msg.external_id) == []
    key = f"{BOT}/users/{msg.conversation}@generic/inbox/{msg.external_id}/0-big.pdf"
    assert await stores.blobs.stat(key) is None
    # Cut off past 16 MiB, not read to its end (socket buffers took a few MiB more).
    assert 16 * MiB < endless_sender.sent < 32 * MiB
