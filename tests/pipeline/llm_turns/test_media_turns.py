"""Images and documents through whole turns: the real pipeline and stores, WhatsApp's media
fetched from the fake Graph API, the model behind the real SDKs on the fake servers.

The image the model sees is the normalized one (upright, no EXIF, capped); a document's
text goes with the question page by page within the token budget; a bomb, a damaged
image, an impostor or an encrypted PDF gets a clear reply and the turn ends cleanly; a
bot without a vision model says what it needs, and still reads documents; a dialog
waiting at ``HEAR x AS IMAGE|QRCODE|FILE`` gets the file's signed link or the code's text,
and ``GET "file"`` reads the bot's drive."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from channels.base import Attachment, InboundMessage, MediaKind
from channels.whatsapp import WhatsAppChannel
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.media import MediaIntake
from pipeline.services import Services
from pipeline.turn import Turn
from storage.blob_urls import MediaTokens, MediaUrls
from storage.services import Stores
from tests.channels.fake_graph import PHONE_NUMBER_ID, FakeGraphApi
from tests.channels.fake_graph import TOKEN as GRAPH_TOKEN
from tests.llm.fake_anthropic import FakeAnthropic
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer, ScriptedServer
from tests.llm.vision import anthropic_images, openai_images, user_text
from tests.pipeline.llm_turns.conftest import FAST, Sink, environment
from tests.pipeline.media_samples import (
    bomb_png,
    docx,
    encrypted_pdf,
    image_of,
    pdf,
    photo,
    qr_png,
    sideways_photo,
    truncated_jpeg,
)

SECRET = b"media-turns-signing-key-0123456789abcdef"
PDF_TYPE = "application/pdf"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphApi]:
    fake = FakeGraphApi()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def services(stores: Stores, graph: FakeGraphApi) -> AsyncIterator[Services]:
    whatsapp = WhatsAppChannel(
        access_token=GRAPH_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        app_secret="secret",
        api_url=graph.api_url,
    )
    urls = MediaUrls(stores.blobs, MediaTokens(SECRET), base_url="https://bots.example")
    intake = MediaIntake(
        stores.blobs,
        stores.media,
        lambda bot, channel: whatsapp if channel == "whatsapp" else None,
        urls=urls,
    )
    yield Services(
        conversations=stores.conversations,
        locks=stores.locks,
        memory=stores.memory,
        tables=stores.tables,
        media=intake,
    )
    await whatsapp.close()


@dataclass
class Sent:
    turn: Turn
    replies: list[str]


Send = Callable[..., Awaitable[Sent]]


@pytest.fixture
async def bot(
    tmp_path: Path, stores: Stores, services: Services, graph: FakeGraphApi
) -> AsyncIterator[Callable[..., Send]]:
    """``bot(server, config, dialog)`` -> ``send(*files, text="")``: one user's messages,
    each file ``(bytes, content type, kind[, filename])`` put on the fake Graph API.
    ``{bot}`` in the dialog is the bot's name; its package has ``{bot}.gbkb/news/news.pdf``
    and ``notes.txt``."""
    registries: list[BotRegistry] = []

    def make(
        server: ScriptedServer | None, config: dict[str, str], dialog: str | None = None
    ) -> Send:
        name = f"media{len(registries)}"
        package = tmp_path / f"bots{len(registries)}" / f"{name}.gbai"
        (package / f"{name}.gbot").mkdir(parents=True)
        rows = "".join(f"{k},{v}\n" for k, v in config.items())
        (package / f"{name}.gbot" / "config.csv").write_text("name,value\n" + rows)
        if dialog is not None:
            (package / f"{name}.gbdialog").mkdir()
            (package / f"{name}.gbdialog" / "start.bas").write_text(dialog.replace("{bot}", name))
        (package / f"{name}.gbkb" / "news").mkdir(parents=True)
        (package / f"{name}.gbkb" / "news" / "news.pdf").write_bytes(
            pdf("Quarterly news: sales grew 12 percent.", "Page two: new office in Recife.")
        )
        (package / "notes.txt").write_text("Opening hours: 9 to 17.")
        registry = BotRegistry(
            package.parent,
            tables=stores.tables,
            environ=environment(server) if server is not None else {},
            llm_policy=FAST,
        )
        registries.append(registry)
        user = f"5511{uuid.uuid4().int % 10**9:09d}"
        loaded: list[bool] = []

        async def send(*files: tuple[object, ...], text: str = "") -> Sent:
            if not loaded:
                await registry.load_all()
                loaded.append(True)
            attachments = []
            for data, content_type, kind, *rest in files:
                media_id = uuid.uuid4().hex
                graph.add_media(media_id, data, str(content_type))  # type: ignore[arg-type]
                attachments.append(
                    Attachment(
                        kind=kind,  # type: ignore[arg-type]
                        content_type=str(content_type),
                        provider_id=media_id,
                        filename=str(rest[0]) if rest else None,
                    )
                )
            message = InboundMessage(
                channel="whatsapp",
                bot=name,
                conversation=user,
                sender=user,
                external_id=f"wamid.{uuid.uuid4().hex}",
                text=text,
                attachments=tuple(attachments),
            )
            sink = Sink()
            turn = await Dispatcher(registry, services).handle(message, sink)
            return Sent(turn, [m.text for m in sink.messages])

        return send

    yield make
    for registry in registries:
        await registry.close()


VISION = {"llm-vision": "true"}


def image(data: bytes, content_type: str = "image/jpeg") -> tuple[bytes, str, MediaKind]:
    return (data, content_type, MediaKind.IMAGE)


def document(data: bytes, name: str, content_type: str = PDF_TYPE) -> tuple[object, ...]:
    return (data, content_type, MediaKind.DOCUMENT, name)


@pytest.mark.parametrize("server_kind", ["openai", "anthropic"])
async def test_the_model_sees_the_photo_upright_stripped_and_capped(
    server_kind: str,
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    bot: Callable[..., Send],
    stores: Stores,
) -> None:
    server: ScriptedServer = openai_server if server_kind == "openai" else anthropic_server
    server.script(Answer(text=("A red and blue card.",)))
    send = bot(server, VISION)
    original = sideways_photo(4000, 2000)
    sent = await send(image(original), text="what is this?")
    assert sent.replies == ["A red and blue card."]
    body = server.calls[0].body
    [(content_type, data)] = (
        openai_images(body) if server_kind == "openai" else anthropic_images(body)
    )
    seen = image_of(data)
    assert (content_type, seen.size) == ("image/jpeg", (784, 1568))  # upright, capped
    assert seen.getpixel((392, 100))[0] > 150 and seen.getpixel((392, 1400))[2] > 150
    assert not seen.getexif() and b"PhoneCam" not in data
    assert user_text(body) == "what is this?"
    # The original is what the store keeps, and the history row points at it.
    [stored] = sent.turn.media
    async with stores.blobs.open(stored.key) as reader:
        assert b"".join([c async for c in reader.chunks()]) == original
    user_row = next(e for e in sent.turn.history if e.role == "user")
    assert [a.key for a in user_row.attachments] == [stored.key]


@pytest.mark.parametrize(
    ("data", "content_type", "reply"),
    [
        (bomb_png(), "image/png", "That image is far too large for me to open"),
        (truncated_jpeg(), "image/jpeg", "I couldn't open that image: the file looks damaged"),
        (pdf("I am a PDF"), "image/jpeg", "The file you sent as an image isn't one I can open"),
    ],
)
async def test_bad_images_get_a_clear_reply_and_the_turn_ends_cleanly(
    data: bytes,
    content_type: str,
    reply: str,
    openai_server: FakeOpenAI,
    bot: Callable[..., Send],
    caplog: pytest.LogCaptureFixture,
) -> None:
    send = bot(openai_server, VISION)
    with caplog.at_level(logging.WARNING, logger="pipeline.media_content"):
        sent = await send(image(data, content_type))
    [said] = sent.replies
    assert said.startswith(reply)
    assert openai_server.calls == []  # the model was not asked
    assert "attachment unreadable" in caplog.text
    assert sent.turn.history[-1].role == "assistant"  # the turn committed its reply
    # The worker goes on: the next message is answered.
    openai_server.script(Answer(text=("Hello!",)))
    assert (await send(text="hi")).replies == ["Hello!"]


async def test_a_bad_image_with_a_question_still_gets_the_question_answered(
    openai_server: FakeOpenAI, bot: Callable[..., Send]
) -> None:
    openai_server.script(Answer(text=("Yes, send it again.",)))
    sent = await bot(openai_server, VISION)(image(bomb_png(), "image/png"), text="can you see?")
    assert sent.replies[0].startswith("That image is far too large")
    assert sent.replies[1] == "Yes, send it again."


async def test_without_a_vision_model_images_get_a_reply_saying_what_the_bot_needs(
    openai_server: FakeOpenAI, bot: Callable[..., Send]
) -> None:
    send = bot(openai_server, {})  # the model is not configured as reading images
    sent = await send(image(photo(320, 240)))
    assert sent.replies == [
        "I can't look at images: this bot needs a language model that reads them. (For its "
        "operator: set llm-vision,true in config.csv for a vision-capable model, such as "
        "gpt-4o or Claude.)"
    ]
    assert openai_server.calls == []
    # Documents still work with the same model.
    openai_server.script(Answer(text=("It says sales grew.",)))
    sent = await send(document(pdf("Sales grew 12 percent."), "report.pdf"), text="summary?")
    assert sent.replies == ["It says sales grew."]
    assert "Sales grew 12 percent." in user_text(openai_server.calls[0].body)
    # And with no model at all, the image still gets the reply.
    no_model = bot(None, {})
    assert (await no_model(image(photo(320, 240)))).replies[0].startswith("I can't look at")


async def test_a_pdfs_text_goes_to_the_model_page_by_page(
    openai_server: FakeOpenAI, bot: Callable[..., Send]
) -> None:
    openai_server.script(Answer(text=("The total is 42.",)))
    report = pdf("Invoice 7\nCustomer: Ada", "Items: 3 chairs", "Total: 42 BRL")
    sent = await bot(openai_server, {})(document(report, "invoice.pdf"), text="the total?")
    assert sent.replies == ["The total is 42."]
    text = user_text(openai_server.calls[0].body)
    assert text.startswith("the total?\n\nThe user attached the document(s) below.")
    assert "=== invoice.pdf, 3 pages ===" in text
    assert text.index("--- page 1 ---\nInvoice 7\nCustomer: Ada") < text.index(
        "--- page 3 ---\nTotal: 42 BRL"
    )
    assert "did not fit" not in text


@pytest.mark.parametrize(
    ("data", "name", "content_type", "expected"),
    [
        (b"name,qty\nchair,3\ntable,1\n", "stock.csv", "text/csv", "name: chair; qty: 3"),
        (b"# Notes\n\nBring the *receipt*.", "notes.md", "text/markdown", "Bring the *receipt*."),
        (b"plain words", "a.txt", "text/plain", "plain words"),
        (docx("Rent: 900 a month."), "lease.docx", DOCX_TYPE, "Rent: 900 a month."),
    ],
)
async def test_text_documents_are_read_too(
    data: bytes,
    name: str,
    content_type: str,
    expected: str,
    openai_server: FakeOpenAI,
    bot: Callable[..., Send],
) -> None:
    openai_server.script(Answer(text=("ok",)))
    await bot(openai_server, {})(document(data, name, content_type))
    text = user_text(openai_server.calls[0].body)
    assert text.startswith("The user attached") and expected in text


async def test_a_document_over_the_budget_is_cut_with_a_note(
    openai_server: FakeOpenAI, bot: Callable[..., Send]
) -> None:
    openai_server.script(Answer(text=("I read the start.",)))
    pages = [f"Page {n} " + "lorem ipsum dolor sit amet " * 60 for n in range(1, 41)]
    send = bot(openai_server, {"llm-context-window": "6000", "llm-max-tokens": "500"})
    sent = await send(document(pdf(*pages), "manual.pdf"), text="what does it say?")
    assert sent.replies == ["I read the start."]
    text = user_text(openai_server.calls[0].body)
    assert "--- page 1 ---" in text and "--- page 40 ---" not in text
    assert "of manual.pdf did not fit and was left out.]" in text
    assert "to page 40 of manual.pdf" in text


@pytest.mark.parametrize(
    ("data", "name", "content_type", "reply"),
    [
        (encrypted_pdf(), "salaries.pdf", PDF_TYPE, "salaries.pdf is protected with a password"),
        (b"%PDF-1.7\n1 0 obj garbage", "broken.pdf", PDF_TYPE, "I couldn't read broken.pdf"),
        (b"\x00\x01binary", "fake.pdf", PDF_TYPE, "I couldn't read fake.pdf"),  # a lie
        (b"PK\x03\x04zip", "archive.zip", "application/zip", "I kept archive.zip, but I can't"),
    ],
)
async def test_unreadable_documents_get_a_clear_reply(
    data: bytes,
    name: str,
    content_type: str,
    reply: str,
    openai_server: FakeOpenAI,
    bot: Callable[..., Send],
) -> None:
    sent = await bot(openai_server, {})(document(data, name, content_type))
    [said] = sent.replies
    assert said.startswith(reply)
    assert openai_server.calls == []


async def test_a_document_too_big_to_read_is_kept_and_said_so(
    openai_server: FakeOpenAI, bot: Callable[..., Send]
) -> None:
    send = bot(openai_server, {"document-max-bytes": "1000"})
    sent = await send(document(pdf(*["x" * 80] * 20), "big.pdf"))
    [said] = sent.replies
    assert said.startswith("I kept big.pdf, but it is too large for me to read (")
    assert openai_server.calls == [] and len(sent.turn.media) == 1  # stored all the same


HEAR_DIALOG = """\
TALK "Send a photo."
HEAR photo AS IMAGE
TALK "photo: " + photo
TALK "Now the QR code."
HEAR code AS QRCODE
TALK "code: " + code
TALK "And the contract."
HEAR contract AS FILE
TALK "file: " + contract
"""


async def test_hear_as_image_qrcode_and_file(bot: Callable[..., Send], stores: Stores) -> None:
    send = bot(None, {}, HEAR_DIALOG)
    assert (await send(text="hi")).replies == ["Send a photo."]
    assert (await send(text="no photo")).replies == ["Please send an image."]
    sent = await send(image(sideways_photo()))
    url = sent.replies[0].removeprefix("photo: ")
    assert url.startswith("https://bots.example/media/")
    tokens = MediaTokens(SECRET)
    grant = tokens.read(url.removeprefix("https://bots.example/media/"))
    assert grant.key == sent.turn.media[0].key  # the stored original, by a signed link
    assert sent.replies[1] == "Now the QR code."
    bad = await send(image(bomb_png(), "image/png"))
    assert bad.replies[0].startswith("That image is far too large")
    blank = await send(image(photo(300, 300)))
    assert blank.replies == [
        "I couldn't find a QR code in that picture.",
        "Please send a picture of the QR code.",
    ]
    sent = await send(image(qr_png("PIX:00020126-bank-42"), "image/png"))
    assert sent.replies[:2] == ["code: PIX:00020126-bank-42", "And the contract."]
    sent = await send(document(pdf("Contract"), "contract.pdf"))
    link = sent.replies[0].removeprefix("file: ")
    assert tokens.read(link.removeprefix("https://bots.example/media/")).filename == "contract.pdf"


GET_DIALOG = """\
news = GET "{bot}.gbkb/news/news.pdf"
TALK news
TALK GET "notes.txt"
"""


async def test_get_reads_the_bots_drive(bot: Callable[..., Send]) -> None:
    replies = (await bot(None, {}, GET_DIALOG)(text="hi")).replies
    assert replies == [
        "Quarterly news: sales grew 12 percent.\n\nPage two: new office in Recife.",
        "Opening hours: 9 to 17.",
    ]


async def test_a_photo_and_a_document_together(
    openai_server: FakeOpenAI, bot: Callable[..., Send]
) -> None:
    openai_server.script(Answer(text=("Both seen.",)))
    sent = await bot(openai_server, VISION)(
        image(photo(640, 480)), document(pdf("Menu: soup 12"), "menu.pdf"), text="compare"
    )
    assert sent.replies == ["Both seen."]
    body = openai_server.calls[0].body
    assert len(openai_images(body)) == 1
    assert "Menu: soup 12" in user_text(body)


async def test_later_turns_know_which_files_were_sent(
    openai_server: FakeOpenAI, bot: Callable[..., Send]
) -> None:
    openai_server.script(Answer(text=("Seen.",)), Answer(text=("You sent a PDF.",)))
    send = bot(openai_server, VISION)
    await send(image(photo(320, 240)), document(pdf("Menu"), "menu.pdf"))
    await send(text="what did I send?")
    history = [m for m in openai_server.calls[1].body["messages"] if m["role"] == "user"]
    assert history[0]["content"] == ("[The user sent: an image, menu.pdf (a document)]")
    assert openai_images(openai_server.calls[1].body) == []  # contents went with that turn
