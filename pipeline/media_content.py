"""What the dialog and the model get out of the turn's stored files: images, documents.

The media stage keeps every attachment as it came (:class:`~pipeline.media.StoredMedia`);
this module reads them when something asks, once per turn (the result is kept on
:attr:`pipeline.turn.Turn.readings`):

* an image is normalized (:mod:`pipeline.images`, in a worker thread): upright, no
  metadata, its size capped, JPEG/PNG/WebP, for a vision model and for QR decoding;
* a document (PDF, ``.docx``, text, Markdown, CSV) is read page by page through the
  knowledge base's readers (:func:`pipeline.kb.readers.read_document`), PDF and ``.docx``
  in the parser processes, the rest in a thread; what kind of file it is is judged from
  its first bytes before its name or content type (either may lie).

A file that cannot be read is :class:`Unreadable`, with a reason the log keeps and a
reply the user gets (:func:`unreadable_reply`): an image bomb, a truncated or damaged
image, bytes that are no image though sent as one, an encrypted or malformed PDF, a kind
of document we do not read, a document too big to read. A store that fails raises
:class:`~storage.blobs_base.BlobError`: the turn fails and is run again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

from channels.base import MediaKind
from pipeline import images
from pipeline.images import ImageLimits, ImageRejected, NormalizedImage
from pipeline.kb.documents import UnreadableDocument
from pipeline.kb.parser_processes import parse_in_process, read_off_loop
from pipeline.kb.readers import SUPPORTED_SUFFIXES, read_document
from pipeline.llm import ImagePart
from pipeline.media import StoredMedia
from pipeline.turn import Turn
from storage.blobs_base import BlobNotFound

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# A document is read whole into memory to be parsed (pypdf needs all of it): bigger ones
# are kept, and linked to, but not read (``document-max-bytes`` in config.csv).
DEFAULT_DOCUMENT_MAX_BYTES = 20 * MiB
# Images are held whole to be decoded too; the channels' limits (5 MB on WhatsApp, 20 MB
# on Telegram) are under this.
IMAGE_MAX_BYTES = 25 * MiB

# Why a file was not read (logged; each has its reply).
DOCUMENT_ENCRYPTED = "encrypted"
DOCUMENT_MALFORMED = "malformed"
DOCUMENT_UNSUPPORTED = "unsupported"
TOO_BIG_TO_READ = "too_big_to_read"
MISSING = "missing"

_REPLIES = {
    images.BOMB: "That image is far too large for me to open (it has too many pixels). "
    "Could you send a smaller photo or a screenshot?",
    images.CORRUPT: "I couldn't open that image: the file looks damaged or cut short. "
    "Could you send it again?",
    images.NOT_AN_IMAGE: "The file you sent as an image isn't one I can open (it is not a "
    "JPEG, PNG, WebP, GIF, BMP or TIFF picture).",
    DOCUMENT_ENCRYPTED: "{name} is protected with a password, so I can't read it. Could you "
    "send a copy without the password?",
    DOCUMENT_MALFORMED: "I couldn't read {name}: the file looks damaged or is not what its "
    "name says.",
    DOCUMENT_UNSUPPORTED: "I kept {name}, but I can't read what is in it: I read PDF, Word "
    "(.docx), text, Markdown and CSV files.",
    TOO_BIG_TO_READ: "I kept {name}, but it is too large for me to read ({detail}).",
    MISSING: "I couldn't find the file you sent any more. Could you send it again?",
}

# What each kind of document is, by its content type, when its bytes say nothing.
_SUFFIX_OF_TYPE = {
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "text/csv": ".csv",
    "text/comma-separated-values": ".csv",
}
_TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".csv"})


@dataclass(frozen=True, slots=True)
class ReadImage:
    """An image of the turn, normalized."""

    media: StoredMedia
    image: NormalizedImage


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """The text of one page (``number`` from 1; None for a document without pages)."""

    number: int | None
    text: str


@dataclass(frozen=True, slots=True)
class ReadDocumentFile:
    """A document of the turn, read into its pages' text."""

    media: StoredMedia
    name: str
    pages: tuple[DocumentPage, ...]
    page_count: int | None  # a paged document's pages, blank ones included


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A file of the turn that could not be read, and why (one of the reasons above)."""

    media: StoredMedia
    reason: str
    detail: str


MediaReading = ReadImage | ReadDocumentFile | Unreadable


def display_name(media: StoredMedia) -> str:
    """The file's name as the user knows it, else a word for its kind."""
    if media.filename:
        return media.filename
    return {MediaKind.IMAGE: "the image", MediaKind.DOCUMENT: "the document"}.get(
        media.kind, "the file"
    )


def unreadable_reply(problem: Unreadable) -> str:
    """What the user is told about a file that could not be read."""
    return _REPLIES[problem.reason].format(name=display_name(problem.media), detail=problem.detail)


async def _bytes(turn: Turn, media: StoredMedia, limit: int) -> bytes | Unreadable:
    intake = turn.services.media
    assert intake is not None, "stored media come from the media stage's intake"
    if media.size > limit:
        detail = f"{media.size / MiB:.1f} MB, over {limit / MiB:g} MB"
        return Unreadable(media, TOO_BIG_TO_READ, detail)
    try:
        async with intake.blobs.open(media.key) as reader:
            return b"".join([chunk async for chunk in reader.chunks()])
    except BlobNotFound:
        return Unreadable(media, MISSING, "not in the blob store")


def _logged(turn: Turn, problem: Unreadable) -> Unreadable:
    log.warning(
        "attachment unreadable channel=%s bot=%s message=%s position=%d kind=%s "
        "content_type=%s: %s (%s)",
        turn.message.channel,
        turn.bot.name,
        turn.message.external_id,
        problem.media.position,
        problem.media.kind.value,
        problem.media.content_type,
        problem.reason,
        problem.detail,
    )
    return problem


async def read_image(turn: Turn, media: StoredMedia) -> ReadImage | Unreadable:
    """The image normalized (once per turn), or why it cannot be."""
    known = turn.readings.get(media.position)
    if isinstance(known, ReadImage | Unreadable):
        return known
    data = await _bytes(turn, media, IMAGE_MAX_BYTES)
    result: ReadImage | Unreadable
    if isinstance(data, Unreadable):
        result = _logged(turn, data)
    else:
        try:
            normalized = await images.normalize_off_loop(
                data, ImageLimits.from_config(turn.bot.package.config)
            )
        except ImageRejected as e:
            result = _logged(turn, Unreadable(media, e.reason, e.detail))
        else:
            result = ReadImage(media, normalized)
            log.info(
                "image normalized bot=%s message=%s position=%d %s %dx%d -> %s %dx%d",
                turn.bot.name,
                turn.message.external_id,
                media.position,
                normalized.source_format,
                normalized.source_width,
                normalized.source_height,
                normalized.content_type,
                normalized.width,
                normalized.height,
            )
    turn.readings[media.position] = result
    return result


def is_image(media: StoredMedia) -> bool:
    """An image, sent as a photo or as a file (Telegram's "send as file")."""
    return media.kind is MediaKind.IMAGE or (
        media.kind is MediaKind.DOCUMENT and media.content_type.startswith("image/")
    )


def document_suffix(media: StoredMedia, head: bytes) -> str | None:
    """The reader to use, from the file's first bytes, then its name, then its type:
    ``""`` for a kind we do not read, ``None`` for a file said to be a PDF or a Word
    document whose bytes are not one."""
    if head.startswith(b"%PDF-"):
        return ".pdf"
    name_suffix = PurePosixPath(media.filename or "").suffix.lower()
    type_suffix = _SUFFIX_OF_TYPE.get(media.content_type.split(";")[0].strip(), "")
    claimed = name_suffix if name_suffix in SUPPORTED_SUFFIXES else type_suffix
    if head.startswith(b"PK\x03\x04"):  # a zip: a .docx if it says so, else nothing we read
        return ".docx" if ".docx" in (name_suffix, type_suffix) else ""
    if claimed in (".pdf", ".docx"):
        return None
    if claimed in _TEXT_SUFFIXES and b"\x00" not in head:
        return claimed
    return ""


async def read_document_file(turn: Turn, media: StoredMedia) -> ReadDocumentFile | Unreadable:
    """The document's text page by page (once per turn), or why it cannot be read."""
    known = turn.readings.get(media.position)
    if isinstance(known, ReadDocumentFile | Unreadable):
        return known
    limit = turn.bot.package.config.integer("document-max-bytes", DEFAULT_DOCUMENT_MAX_BYTES)
    data = await _bytes(turn, media, limit if limit > 0 else DEFAULT_DOCUMENT_MAX_BYTES)
    result: ReadDocumentFile | Unreadable
    if isinstance(data, Unreadable):
        result = _logged(turn, data)
    else:
        result = await _read(turn, media, data)
        if isinstance(result, Unreadable):
            _logged(turn, result)
        else:
            log.info(
                "document read bot=%s message=%s position=%d pages=%s characters=%d",
                turn.bot.name,
                turn.message.external_id,
                media.position,
                result.page_count,
                sum(len(p.text) for p in result.pages),
            )
    turn.readings[media.position] = result
    return result


async def _read(turn: Turn, media: StoredMedia, data: bytes) -> ReadDocumentFile | Unreadable:
    name = display_name(media)
    suffix = document_suffix(media, data[:512])
    if suffix is None:
        return Unreadable(media, DOCUMENT_MALFORMED, "its bytes are not what it claims to be")
    if not suffix:
        return Unreadable(media, DOCUMENT_UNSUPPORTED, f"content type {media.content_type}")
    source = f"{PurePosixPath(name).stem or 'document'}{suffix}"
    try:
        read = await read_off_loop(
            source, parse_in_process(source), None, read_document, source, data
        )
    except UnreadableDocument as e:
        reason = DOCUMENT_ENCRYPTED if "encrypted" in e.reason else DOCUMENT_MALFORMED
        return Unreadable(media, reason, e.reason)
    pages: list[DocumentPage] = []
    for section in read.sections:
        text = section.text.strip()
        if not text:
            continue
        if pages and pages[-1].number == section.page:  # sections of one page: one page
            pages[-1] = DocumentPage(section.page, f"{pages[-1].text}\n\n{text}")
        else:
            pages.append(DocumentPage(section.page, text))
    return ReadDocumentFile(media, name, tuple(pages), read.pages)


async def read_all(
    turn: Turn,
) -> tuple[list[ReadImage], list[ReadDocumentFile], list[Unreadable]]:
    """Every image and document of the turn read, with what could not be."""
    found_images: list[ReadImage] = []
    documents: list[ReadDocumentFile] = []
    problems: list[Unreadable] = []
    for media in turn.media:
        reading: MediaReading
        if is_image(media):
            reading = await read_image(turn, media)
        elif media.kind is MediaKind.DOCUMENT:
            reading = await read_document_file(turn, media)
        else:
            continue  # audio and video are read elsewhere
        if isinstance(reading, ReadImage):
            found_images.append(reading)
        elif isinstance(reading, ReadDocumentFile):
            documents.append(reading)
        else:
            problems.append(reading)
    return found_images, documents, problems


NO_VISION_REPLY = (
    "I can't look at images: this bot needs a language model that reads them. (For its "
    "operator: set llm-vision,true in config.csv for a vision-capable model, such as "
    "gpt-4o or Claude.)"
)


@dataclass(frozen=True, slots=True)
class ModelMedia:
    """What of the turn's files goes to the model, and what the user is told first."""

    images: tuple[ImagePart, ...]
    documents: tuple[ReadDocumentFile, ...]
    replies: tuple[str, ...]
    unusable: bool  # the message had files and none of them can be used

    @property
    def anything(self) -> bool:
        return bool(self.images or self.documents)


async def for_the_model(turn: Turn, *, vision: bool) -> ModelMedia:
    """The turn's images (normalized, for a model that reads them) and documents (read),
    with a reply for each file that could not be used: an image without a vision model,
    a file that is unreadable (see :func:`unreadable_reply`). Documents do not need
    vision: they are read the same for every model."""
    found_images, documents, problems = await read_all(turn)
    replies = [unreadable_reply(p) for p in problems]
    parts = tuple(ImagePart(r.image.data, r.image.content_type) for r in found_images)
    if parts and not vision:
        log.info(
            "bot %s: %d image(s) of message %s not sent: no provider has llm-vision",
            turn.bot.name,
            len(parts),
            turn.message.external_id,
        )
        replies.append(NO_VISION_REPLY)
        parts = ()
    return ModelMedia(
        images=parts,
        documents=tuple(documents),
        replies=tuple(dict.fromkeys(replies)),
        unusable=bool(found_images or documents or problems) and not (parts or documents),
    )
