"""A user's photo or document end to end, on each channel: a real gateway on a real
PostgreSQL, the real channel SDKs against the fake Telegram, Graph and Twilio APIs, and the
model behind the real ``openai`` SDK on the fake server. The file is fetched from the
provider (Telegram getFile, WhatsApp's media id, Twilio's MediaUrl), stored, noted on the
history row; the model gets the normalized image (upright, no EXIF) or the document's
text; its answer goes back through the channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
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
    Client,
    channel_rows,
    gateway_settings,
    tg_post,
    tg_texts,
    twilio_post,
    wa_media,
    wa_notification,
    wa_post,
    write_bot,
)
from tests.channels.test_gateway_media import CHAT, tg_photo
from tests.databases import database_fixture
from tests.fake_servers import fake_server
from tests.llm import fake_openai
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer
from tests.llm.vision import openai_images, user_text
from tests.pipeline.media_samples import image_of, pdf, sideways_photo

telegram = fake_server(FakeBotApi)
graph = fake_server(FakeGraphApi)
twilio = fake_server(FakeTwilioApi)
model = fake_server(FakeOpenAI)
database = database_fixture("botserver_vision")


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str,
    tmp_path: Path,
    aiohttp_client,
    telegram: FakeBotApi,
    graph: FakeGraphApi,
    twilio: FakeTwilioApi,
    model: FakeOpenAI,
) -> Client:
    folder = tmp_path / "bots"
    llm = {
        "llm-url": f"{model.url}/v1",
        "llm-key": fake_openai.API_KEY,
        "llm-model": "gpt-4o",
        "llm-vision": "true",
    }
    write_bot(
        folder,
        "relay",
        channel_rows(telegram, graph, twilio) | llm,
        dialog="REM the model answers everything\n",
    )
    return await aiohttp_client(create_app(gateway_settings(database, folder, tmp_path / "data")))


async def until(found: Callable[[], Any], what: str, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := found()):
        assert time.monotonic() < deadline, f"no {what}"
        await asyncio.sleep(0.05)
    return value


async def user_row(client: Client, channel: str, user: str) -> Any:
    """The user's history row, once the turn committed (its reply may go out before)."""
    stores: Stores = client.server.app[STORES]
    deadline = time.monotonic() + 15
    while True:
        session = await stores.conversations.find_active(
            bot_id="relay", channel=channel, user_id=user
        )
        rows = await stores.conversations.history(session.id, limit=10) if session else []
        found = [r for r in rows if r.role == "user"]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "the turn did not commit"
        await asyncio.sleep(0.05)


async def stored(client: Client, key: str) -> bytes:
    stores: Stores = client.server.app[STORES]
    async with stores.blobs.open(key) as reader:
        return b"".join([chunk async for chunk in reader.chunks()])


def seen_upright(model: FakeOpenAI) -> None:
    """The model got one image: the sideways photo turned upright, without its EXIF."""
    [(content_type, data)] = openai_images(model.calls[0].body)
    image = image_of(data)
    assert (content_type, image.size) == ("image/jpeg", (200, 400))
    assert image.getpixel((100, 50))[0] > 150 and image.getpixel((100, 350))[2] > 150
    assert not image.getexif()


async def test_a_telegram_photo_reaches_the_model_through_getfile(
    client: Client, telegram: FakeBotApi, model: FakeOpenAI
) -> None:
    photo = sideways_photo()
    model.script(Answer(text=("A red and blue card.",)))
    path = telegram.add_file("AgAC-card", photo, file_path="photos/card.jpg")
    assert await tg_post(client, tg_photo(901, "AgAC-card", len(photo), "what is it?")) == 200
    await until(lambda: tg_texts(telegram, CHAT), "reply on Telegram")
    assert tg_texts(telegram, CHAT) == ["A red and blue card."]
    assert telegram.downloads == {path: 1}
    assert [c.params["file_id"] for c in telegram.calls_to("getFile")] == ["AgAC-card"]
    seen_upright(model)
    assert user_text(model.calls[0].body) == "what is it?"
    row = await user_row(client, "telegram", str(CHAT))
    [note] = row.attachments
    assert (note.kind, note.caption) == ("image", "what is it?")
    assert await stored(client, note.key) == photo  # the original is kept


async def test_a_whatsapp_photo_and_a_pdf_through_their_media_ids(
    client: Client, graph: FakeGraphApi, model: FakeOpenAI
) -> None:
    photo = sideways_photo()
    graph.add_media("7001", photo, "image/jpeg")
    graph.add_media("7002", pdf("Order 55", "Total: 90 BRL"), "application/pdf")
    model.script(Answer(text=("A card.",)), Answer(text=("The total is 90 BRL.",)))
    image = wa_media("wamid.vision1", "image", {"id": "7001", "mime_type": "image/jpeg"})
    assert await wa_post(client, wa_notification(messages=[image])) == 200

    def replies() -> list[str]:
        return [
            c.json["text"]["body"]
            for c in graph.calls
            if c.path.endswith("/messages") and isinstance(c.json, dict) and "text" in c.json
        ]

    await until(replies, "reply on WhatsApp")
    seen_upright(model)
    document = wa_media(
        "wamid.vision2",
        "document",
        {"id": "7002", "mime_type": "application/pdf", "filename": "order.pdf"},
    )
    assert await wa_post(client, wa_notification(messages=[document])) == 200
    await until(lambda: len(replies()) == 2, "second reply on WhatsApp")
    assert replies() == ["A card.", "The total is 90 BRL."]
    text = user_text(model.calls[1].body)
    assert "=== order.pdf, 2 pages ===" in text and "--- page 2 ---\nTotal: 90 BRL" in text
    assert graph.downloads == {"7001": 1, "7002": 1}


async def test_a_twilio_mediaurl_photo_reaches_the_model(
    client: Client, twilio: FakeTwilioApi, model: FakeOpenAI
) -> None:
    photo = sideways_photo()
    sid = "MM" + "b" * 32
    url = twilio.add_media(sid, photo, "image/jpeg")
    model.script(Answer(text=("Red over blue.",)))
    form = {
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": "whatsapp:+14155550111",
        "To": f"whatsapp:{TWILIO_FROM}",
        "Body": "colours?",
        "NumMedia": "1",
        "MediaUrl0": url,
        "MediaContentType0": "image/jpeg",
    }
    assert (await twilio_post(client, form)).status == 200

    def replies() -> list[str]:
        return [c.form["Body"] for c in twilio.calls if "Body" in c.form]

    await until(replies, "reply through Twilio")
    assert replies() == ["Red over blue."]
    seen_upright(model)
    row = await user_row(client, "twilio-whatsapp", "+14155550111")
    assert await stored(client, row.attachments[0].key) == photo
