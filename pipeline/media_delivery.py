"""The files of an outbox row, as the delivery worker sends them.

A reply that carries files (``SEND FILE TO``) is sent as its files first, each one part
of the row, then its text. A file goes natively (Telegram's sendPhoto, WhatsApp's upload
then message, Twilio's MediaUrl) when the adapter is a :class:`FileSender` that takes its
kind at its size; the reply's text rides on the first such file as its caption when it
fits the channel's caption limit, and follows as text otherwise (always when the reply has
suggestions: its buttons ride on that text, which names the file when there is no
caption). A file a channel cannot
take (an SMS, a file over the provider's limit) becomes a link in the text, to a URL that
expires in :data:`LINK_TTL` (the store's presigned one, or the gateway's ``/media/…``
with a public address); with no public address the text says the file could not be sent.

The bytes are streamed from the blob store when the adapter asks for them; an upload id a
provider gave (WhatsApp's media id) is kept on the row (``uploads``) so that a retry
sends the message without uploading the file again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from channels.base import (
    Attachment,
    Channel,
    OutboundMessage,
    ProviderUnavailable,
    SendRefused,
)
from channels.outbound_media import FileSender, OutboundFile
from channels.rendering import format_parts
from pipeline.protocol_checks import implements
from storage.blob_urls import MAX_TTL, MediaUrls
from storage.blobs_base import DEFAULT_CONTENT_TYPE, BlobError, BlobNotFound, BlobStore

log = logging.getLogger(__name__)

LINK_TTL = MAX_TTL  # a link in a chat is read later than a file is fetched
UPLOADS = "uploads"  # the row message's field: file position -> the provider's upload id


@dataclass(frozen=True, slots=True)
class FileStep:
    """One file of a row sent natively, ``caption`` in the channel's text format."""

    position: int
    attachment: Attachment
    caption: str


@dataclass(frozen=True, slots=True)
class FilePlan:
    """What a row with files becomes: native sends, then the text left (links included)."""

    files: tuple[FileStep, ...]
    text: str


class DeliveryFiles:
    """The blob store and URLs the delivery worker sends files from."""

    def __init__(self, blobs: BlobStore, urls: MediaUrls | None) -> None:
        self.blobs = blobs
        self.urls = urls

    async def plan(self, adapter: Channel, message: OutboundMessage) -> FilePlan:
        sender = adapter if implements(adapter, FileSender) else None
        steps: list[FileStep] = []
        links: list[str] = []
        caption = message.text
        # Buttons ride on a text message (a file cannot carry them on every channel): a
        # reply with suggestions keeps its caption as that text, or names its file there.
        buttons = bool(message.suggestions)
        for position, attachment in enumerate(message.attachments):
            if sender is not None and await self._native(sender, attachment):
                text = ""
                if caption.strip() and not buttons:
                    parts = format_parts(
                        caption, adapter.capabilities.text_format, sender.caption_limit
                    )
                    if len(parts) == 1:
                        text, caption = parts[0], ""
                steps.append(FileStep(position, attachment, text))
            else:
                links.append(await self._link(attachment))
        text = "\n\n".join(t for t in (caption.strip(), "\n".join(links)) if t)
        if buttons and not text:
            text = ", ".join(_label(a) for a in message.attachments)
        return FilePlan(tuple(steps), text)

    def outbound_file(
        self,
        step: FileStep,
        *,
        upload_id: str | None,
        uploaded: Callable[[str], Awaitable[None]] | None,
        sending: Callable[[], Awaitable[None]] | None = None,
    ) -> OutboundFile:
        attachment = step.attachment
        key = attachment.key
        assert key is not None, "only stored files are planned as native sends"

        @contextlib.asynccontextmanager
        async def open_file() -> AsyncIterator[AsyncIterator[bytes]]:
            async with self.blobs.open(key) as reader:
                yield reader.chunks()

        async def url() -> str | None:
            return await self.url(attachment, expires_in=None)

        return OutboundFile(
            kind=attachment.kind,
            filename=attachment.filename or key.rsplit("/", 1)[-1],
            content_type=attachment.content_type or DEFAULT_CONTENT_TYPE,
            size=attachment.size or 0,
            caption=step.caption,
            open=open_file,
            url=url,
            upload_id=upload_id,
            uploaded=uploaded,
            sending=sending,
        )

    async def check(self, attachment: Attachment) -> None:
        """Before a native send: the file is still there (else the send is refused for
        good), and the store answers (else the send is tried again later)."""
        if attachment.key is None:
            raise SendRefused("the file was never stored", code="no-file")
        try:
            stat = await self.blobs.stat(attachment.key)
        except BlobError as e:
            raise ProviderUnavailable(f"the file store failed: {e}", code="blob-store") from e
        if stat is None:
            raise SendRefused(f"the file {attachment.key} is gone", code="no-file")

    async def url(self, attachment: Attachment, *, expires_in: int | None) -> str | None:
        """A URL a provider or a person can fetch the file from (absolute), or ``None``."""
        if attachment.key is None or self.urls is None:
            return None
        try:
            url = await self.urls.url(
                attachment.key,
                filename=attachment.filename,
                content_type=attachment.content_type,
                expires_in=expires_in,
            )
        except (BlobError, BlobNotFound) as e:
            log.warning("no URL for %s: %s", attachment.key, e)
            return None
        return url if url.startswith(("http://", "https://")) else None

    async def _native(self, sender: FileSender, attachment: Attachment) -> bool:
        """Whether the channel takes the file as it is (a provider that fetches files by
        URL needs one it can reach)."""
        if attachment.key is None:
            return False
        media = attachment.content_type or DEFAULT_CONTENT_TYPE
        limit = sender.file_limit(attachment.kind, media)
        if limit is None or (attachment.size or 0) > limit:
            return False
        if sender.fetches_by_url:
            return await self.url(attachment, expires_in=None) is not None
        return True

    async def _link(self, attachment: Attachment) -> str:
        name = attachment.filename or "file"
        url = await self.url(attachment, expires_in=LINK_TTL)
        if url is None:
            log.warning("file %s has no public URL to send as a link", attachment.key)
            return f"[{name}: this file could not be sent here]"
        return f"{name}: {url}"


def _label(attachment: Attachment) -> str:
    """What names a file in the text that carries its message's buttons."""
    return attachment.filename or (attachment.key or "").rsplit("/", 1)[-1] or "file"
