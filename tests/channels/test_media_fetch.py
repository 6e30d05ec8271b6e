"""Each channel fetches its users' files from the provider, streamed, against fake
providers on 127.0.0.1 that check what the real ones check: Telegram's getFile and file
server (through python-telegram-bot), WhatsApp's media id lookup and download with the
access token, Twilio's MediaUrl with the account's basic auth (then its CDN), and a
generic sender's URL through the private-address guard."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from channels.base import (
    Attachment,
    MediaError,
    MediaGone,
    MediaKind,
    MediaRefused,
    MediaSource,
    MediaTooLarge,
    MediaUnavailable,
)
from channels.generic import GenericChannel
from channels.media_http import READ_SIZE, BoundedReadSocket, bounded_socket
from channels.telegram import TelegramChannel
from channels.twilio_channel import TwilioChannel
from channels.whatsapp import WhatsAppChannel
from tests.channels.fake_graph import PHONE_NUMBER_ID, FakeGraphApi
from tests.channels.fake_graph import TOKEN as GRAPH_TOKEN
from tests.channels.fake_telegram import TOKEN as TELEGRAM_TOKEN
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioApi

MiB = 1024 * 1024


async def fetched(source: MediaSource, attachment: Attachment) -> tuple[bytes, str | None]:
    async with source.fetch_media(attachment) as download:
        data = b"".join([chunk async for chunk in download.chunks()])
        return data, download.info.content_type


# -- Telegram ----------------------------------------------------------------------------


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[FakeBotApi, TelegramChannel]]:
    fake = FakeBotApi()
    await fake.start()
    channel = TelegramChannel(token=TELEGRAM_TOKEN, webhook_secret="s", api_url=fake.api_url)
    yield fake, channel
    await channel.close()
    await fake.close()


def tg_photo(file_id: str, size: int | None = None) -> Attachment:
    return Attachment(
        kind=MediaKind.IMAGE, content_type="image/jpeg", provider_id=file_id, size=size
    )


async def test_telegram_files_come_through_getfile_and_the_file_server(
    telegram: tuple[FakeBotApi, TelegramChannel],
) -> None:
    fake, channel = telegram
    data = os.urandom(3 * MiB + 17)
    path = fake.add_file("AgAD-photo", data, file_path="photos/file_7.jpg")
    body, content_type = await fetched(channel, tg_photo("AgAD-photo"))
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert content_type == "image/jpeg"  # the update's type, not the file server's
    [call] = fake.calls_to("getFile")
    assert call.params["file_id"] == "AgAD-photo"
    assert fake.downloads == {path: 1}


async def test_telegram_errors_map_to_what_the_turn_does_next(
    telegram: tuple[FakeBotApi, TelegramChannel],
) -> None:
    fake, channel = telegram
    with pytest.raises(MediaGone):
        await fetched(channel, tg_photo("no-such-file"))
    fake.add_file("big", b"x" * (20 * MiB + 1))
    with pytest.raises(MediaTooLarge):  # getFile's own refusal
        await fetched(channel, tg_photo("big"))
    with pytest.raises(MediaTooLarge):  # the update said so: getFile is not even asked
        await fetched(channel, tg_photo("any", size=25 * MiB))
    fake.add_file("ok", b"fine")
    fake.fail_next("getFile", 502)
    with pytest.raises(MediaUnavailable):
        await fetched(channel, tg_photo("ok"))
    fake.fail_download_next(500)
    with pytest.raises(MediaUnavailable):
        await fetched(channel, tg_photo("ok"))
    fake.cut_download_next()
    with pytest.raises(MediaUnavailable):
        await fetched(channel, tg_photo("ok"))
    assert await fetched(channel, tg_photo("ok")) == (b"fine", "image/jpeg")


async def test_the_telegram_token_is_in_no_error_message(
    telegram: tuple[FakeBotApi, TelegramChannel],
) -> None:
    fake, channel = telegram
    fake.add_file("ok", b"fine")
    failures: list[MediaError] = []
    for script in (lambda: fake.fail_download_next(404), fake.cut_download_next):
        script()
        with pytest.raises(MediaError) as caught:
            await fetched(channel, tg_photo("ok"))
        failures.append(caught.value)
    for error in failures:
        text = f"{error} {error.__cause__!r}"
        assert TELEGRAM_TOKEN.split(":")[1] not in text


# -- WhatsApp ----------------------------------------------------------------------------


@pytest.fixture
async def whatsapp() -> AsyncIterator[tuple[FakeGraphApi, WhatsAppChannel]]:
    fake = FakeGraphApi()
    await fake.start()
    channel = WhatsAppChannel(
        access_token=GRAPH_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        app_secret="secret",
        api_url=fake.api_url,
    )
    yield fake, channel
    await channel.close()
    await fake.close()


def wa_media(media_id: str, kind: MediaKind = MediaKind.AUDIO) -> Attachment:
    return Attachment(kind=kind, content_type="audio/ogg; codecs=opus", provider_id=media_id)


async def test_whatsapp_media_is_looked_up_then_downloaded_with_the_token(
    whatsapp: tuple[FakeGraphApi, WhatsAppChannel],
) -> None:
    fake, channel = whatsapp
    data = os.urandom(2 * MiB)
    fake.add_media("1037543291543636", data, "audio/ogg")
    async with channel.fetch_media(wa_media("1037543291543636")) as download:
        body = b"".join([c async for c in download.chunks()])
        assert download.info.sha256 == hashlib.sha256(data).hexdigest()  # Meta's, to check
        assert (download.info.content_type, download.info.size) == ("audio/ogg", len(data))
    assert body == data
    assert fake.lookups == {"1037543291543636": 1}
    assert fake.downloads == {"1037543291543636": 1}


async def test_whatsapp_failures_and_limits(
    whatsapp: tuple[FakeGraphApi, WhatsAppChannel],
) -> None:
    fake, channel = whatsapp
    with pytest.raises(MediaGone):
        await fetched(channel, wa_media("404404"))  # an id Meta does not know
    fake.add_media("img", b"x" * (5 * MiB + 1), "image/jpeg")
    with pytest.raises(MediaTooLarge) as caught:  # an image over Meta's 5 MB
        await fetched(channel, wa_media("img", MediaKind.IMAGE))
    assert caught.value.limit == 5 * MiB
    assert fake.downloads == {}  # refused from the lookup's size, never downloaded
    fake.add_media("doc", b"%PDF-" + b"x" * (6 * MiB), "application/pdf")
    body, _ = await fetched(channel, wa_media("doc", MediaKind.DOCUMENT))  # 100 MB for these
    assert body.startswith(b"%PDF-")
    fake.add_media("gone", b"voice", "audio/ogg")
    fake.expired.add("gone")
    with pytest.raises(MediaGone):
        await fetched(channel, wa_media("gone"))
    fake.media_failures.append(500)
    with pytest.raises(MediaUnavailable):
        await fetched(channel, wa_media("doc"))


async def test_whatsapp_without_the_right_token_gets_nothing(
    whatsapp: tuple[FakeGraphApi, WhatsAppChannel],
) -> None:
    fake, _ = whatsapp
    fake.add_media("m1", b"voice", "audio/ogg")
    wrong = WhatsAppChannel(
        access_token="EAAG-wrong",
        phone_number_id=PHONE_NUMBER_ID,
        app_secret="s",
        api_url=fake.api_url,
    )
    try:
        with pytest.raises(MediaGone):
            await fetched(wrong, wa_media("m1"))
    finally:
        await wrong.close()


# -- Twilio ------------------------------------------------------------------------------


@pytest.fixture
async def twilio() -> AsyncIterator[tuple[FakeTwilioApi, TwilioChannel]]:
    fake = FakeTwilioApi()
    await fake.start()
    channel, _ = TwilioChannel.pair_from_config(
        "shop",
        {
            "twilio-account-sid": ACCOUNT_SID,
            "twilio-auth-token": AUTH_TOKEN,
            "twilio-from-number": "+15005550006",
            "twilio-api-url": fake.api_url,
        },
    )
    yield fake, channel
    await channel.close()
    await fake.close()


async def test_twilio_media_is_fetched_with_basic_auth_that_never_reaches_the_cdn(
    twilio: tuple[FakeTwilioApi, TwilioChannel],
) -> None:
    fake, channel = twilio
    data = os.urandom(MiB)
    url = fake.add_media("MM" + "1" * 32, data, "image/png")
    attachment = Attachment(kind=MediaKind.IMAGE, content_type="image/png", url=url)
    assert await fetched(channel, attachment) == (data, "image/png")
    assert fake.cdn_authorizations == []  # the credentials stayed with Twilio's API


async def test_twilio_media_failures_and_foreign_urls(
    twilio: tuple[FakeTwilioApi, TwilioChannel],
) -> None:
    fake, channel = twilio
    base = f"{fake.api_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/"
    with pytest.raises(MediaGone):
        await fetched(channel, Attachment(kind=MediaKind.IMAGE, url=base + "ME-missing"))
    url = fake.add_media("MM2", b"img", "image/jpeg")
    fake.media_failures.append(503)
    with pytest.raises(MediaUnavailable):
        await fetched(channel, Attachment(kind=MediaKind.IMAGE, url=url))
    # Our credentials go to Twilio's API only, for this account's messages only.
    for foreign in (
        "https://attacker.example/2010-04-01/Accounts/x/Messages/MM/Media/ME",
        f"{fake.cdn_url}/cdn/ME0",
    ):
        with pytest.raises(MediaRefused):
            await fetched(channel, Attachment(kind=MediaKind.IMAGE, url=foreign))
    other_account = f"{fake.api_url}/2010-04-01/Accounts/AC{'f' * 32}/Messages/MM/Media/ME0"
    with pytest.raises(MediaGone):
        await fetched(channel, Attachment(kind=MediaKind.IMAGE, url=other_account))
    assert sum(fake.media_requests.values()) == 2


# -- generic webhooks --------------------------------------------------------------------


@pytest.fixture
async def sender_files() -> AsyncIterator[str]:
    """A sender's file server on 127.0.0.1 (a private address)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        if request.match_info["name"] == "redirect":
            raise web.HTTPFound("/files/report.pdf")
        if request.match_info["name"] != "report.pdf":
            return web.Response(status=404)
        return web.Response(body=b"%PDF-1.7 report", content_type="application/pdf")

    app = web.Application()
    app.router.add_get("/files/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def generic(allow_private: bool) -> GenericChannel:
    return GenericChannel(
        secret="s" * 16, callback_url="https://example.com/cb", allow_private=allow_private
    )


async def test_a_generic_senders_file_on_a_private_address_is_refused(sender_files: str) -> None:
    channel = generic(allow_private=False)
    try:
        with pytest.raises(MediaRefused, match="private"):
            await fetched(
                channel, Attachment(kind=MediaKind.DOCUMENT, url=f"{sender_files}/files/report.pdf")
            )
    finally:
        await channel.close()


async def test_with_private_allowed_the_file_is_fetched_redirects_included(
    sender_files: str,
) -> None:
    channel = generic(allow_private=True)
    try:
        doc = Attachment(kind=MediaKind.DOCUMENT, url=f"{sender_files}/files/redirect")
        assert await fetched(channel, doc) == (b"%PDF-1.7 report", "application/pdf")
        with pytest.raises(MediaGone):
            await fetched(channel, Attachment(kind=MediaKind.DOCUMENT, url=f"{sender_files}/x"))
        with pytest.raises(MediaTooLarge):  # the sender declared more than the limit
            await fetched(
                channel,
                Attachment(
                    kind=MediaKind.DOCUMENT, url=f"{sender_files}/files/report.pdf", size=17 * MiB
                ),
            )
    finally:
        await channel.close()


async def test_every_adapter_is_a_media_source(
    telegram: tuple[FakeBotApi, TelegramChannel],
    whatsapp: tuple[FakeGraphApi, WhatsAppChannel],
    twilio: tuple[FakeTwilioApi, TwilioChannel],
) -> None:
    for adapter in (telegram[1], whatsapp[1], twilio[1], generic(False)):
        assert isinstance(adapter, MediaSource)
        assert adapter.media_limit(MediaKind.AUDIO) >= 16 * MiB


# -- small reads ---------------------------------------------------------------------


async def test_a_downloads_socket_reads_in_small_pieces() -> None:
    """asyncio's transport asks every recv for 256 KiB (and allocates it): a download's
    socket takes at most READ_SIZE a read, so nothing piles up before the store."""
    left, right = socket.socketpair()
    made = bounded_socket((left.family, left.type, left.proto, "", ("127.0.0.1", 0)))
    assert isinstance(made, BoundedReadSocket)
    made.close()
    bounded = BoundedReadSocket(fileno=left.detach())
    try:
        right.sendall(os.urandom(200 * 1024))
        assert len(bounded.recv(256 * 1024)) <= READ_SIZE
        buffer = bytearray(256 * 1024)
        assert 0 < bounded.recv_into(buffer) <= READ_SIZE
    finally:
        bounded.close()
        right.close()
