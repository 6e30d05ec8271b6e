"""How the delivery worker plans and checks a reply's files (pipeline.media_delivery), on a
real blob store and the real adapters' limits: natively where the channel takes the file,
the caption on it when it fits, else a link; a file gone is refused for good."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from channels.base import Attachment, MediaKind, OutboundMessage, SendRefused
from channels.retry import Disposition, RetryPolicy
from channels.telegram import TelegramChannel
from channels.twilio_channel import TwilioChannel
from channels.whatsapp import WhatsAppChannel
from pipeline.media_delivery import DeliveryFiles
from storage.blob_urls import MediaTokens, MediaUrls
from storage.blobs_fs import FilesystemBlobStore
from tests.channels.fake_telegram import TOKEN


async def stored(blobs: FilesystemBlobStore, key: str, size: int, content_type: str) -> Attachment:
    async def data():  # type: ignore[no-untyped-def]
        yield b"\x01" * size

    await blobs.put(key, data(), content_type=content_type)
    kind = MediaKind.IMAGE if content_type.startswith("image/") else MediaKind.DOCUMENT
    return Attachment(kind, content_type, filename=key.rsplit("/", 1)[-1], size=size, key=key)


def reply(text: str, *attachments: Attachment) -> OutboundMessage:
    return OutboundMessage("telegram", "shop", "42", text, attachments=attachments)


@pytest.fixture
async def blobs(tmp_path: Path) -> FilesystemBlobStore:
    return await FilesystemBlobStore(tmp_path / "blobs").open_store()


def files(blobs: FilesystemBlobStore, base_url: str = "https://bots.example.com") -> DeliveryFiles:
    return DeliveryFiles(blobs, MediaUrls(blobs, MediaTokens(os.urandom(32)), base_url=base_url))


async def test_the_caption_rides_on_the_file_when_it_fits(blobs: FilesystemBlobStore) -> None:
    photo = await stored(blobs, "shop/users/42@telegram/outbox/a/photo.png", 100, "image/png")
    telegram = TelegramChannel(token=TOKEN, api_url="http://127.0.0.1:9/bot")
    plan = await files(blobs).plan(telegram, reply("A **photo**", photo))
    [step] = plan.files
    assert (step.caption, plan.text) == ("A <b>photo</b>", "")
    long = await files(blobs).plan(telegram, reply("word " * 300, photo))
    assert long.files[0].caption == "" and long.text.startswith("word word")
    await telegram.close()


async def test_what_a_channel_cannot_take_becomes_a_link(blobs: FilesystemBlobStore) -> None:
    big = await stored(blobs, "shop/users/1@whatsapp/outbox/b/big.png", 6 << 20, "image/png")
    whatsapp = WhatsAppChannel(access_token="t", phone_number_id="1", app_secret="s")
    plan = await files(blobs).plan(whatsapp, reply("Big", big))
    assert plan.files == ()
    caption, link = plan.text.split("\n\n")
    assert caption == "Big" and link.startswith("big.png: https://bots.example.com/media/")
    # With no public address there is no link to give: the text says so.
    plan = await files(blobs, base_url="").plan(whatsapp, reply("", big))
    assert plan.text == "[big.png: this file could not be sent here]"
    await whatsapp.close()


async def test_twilio_takes_a_file_only_by_a_url_it_can_reach(blobs: FilesystemBlobStore) -> None:
    menu = await stored(
        blobs, "shop/users/1@twilio-whatsapp/outbox/c/menu.pdf", 10, "application/pdf"
    )
    config = {
        "twilio-account-sid": "AC" + "0" * 32,
        "twilio-auth-token": "t",
        "twilio-from-number": "+15005550006",
    }
    whatsapp, sms = TwilioChannel.pair_from_config("shop", config)
    assert len((await files(blobs).plan(whatsapp, reply("Menu", menu))).files) == 1
    assert (await files(blobs, base_url="").plan(whatsapp, reply("Menu", menu))).files == ()
    assert (await files(blobs).plan(sms, reply("Menu", menu))).files == ()  # SMS: a link
    await whatsapp.close()


async def test_a_file_gone_before_its_send_is_refused_for_good(
    blobs: FilesystemBlobStore,
) -> None:
    photo = await stored(blobs, "shop/users/42@telegram/outbox/a/photo.png", 10, "image/png")
    await files(blobs).check(photo)
    await blobs.delete(photo.key)  # type: ignore[arg-type]
    with pytest.raises(SendRefused) as gone:
        await files(blobs).check(photo)
    assert RetryPolicy().decide(gone.value, 1).disposition is Disposition.PARK
