"""Files a bot sends: what an adapter gets to send one natively, and what it can send.

The delivery worker hands an adapter that has ``send_file`` (:class:`FileSender`) an
:class:`OutboundFile`: its kind, name, type, size and caption, a way to stream its bytes
from our storage, a signed URL for providers that fetch media themselves (Twilio), and the
provider's id of an upload made by an earlier attempt (WhatsApp's media id), which the
adapter reuses instead of uploading again; ``uploaded`` is told of a new one so that a
retry finds it. Which files a channel takes, and how large, is the adapter's
:meth:`FileSender.file_limit`; a file it cannot take goes out as a link instead.

This module imports nothing of ours but :mod:`channels.base`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from channels.base import MediaKind, SendResult

MiB = 1024 * 1024

# Opens the file's bytes, a chunk at a time, from our storage.
OpenFile = Callable[[], AbstractAsyncContextManager[AsyncIterator[bytes]]]


@dataclass(frozen=True, slots=True)
class OutboundFile:
    """One file to send: ``caption`` already in the channel's text format (``""``: none)."""

    kind: MediaKind
    filename: str
    content_type: str
    size: int
    caption: str
    open: OpenFile
    url: Callable[[], Awaitable[str | None]]
    upload_id: str | None = None
    uploaded: Callable[[str], Awaitable[None]] | None = None

    @property
    def media_type(self) -> str:
        """The content type without its parameters (``audio/ogg; codecs=opus`` → ``audio/ogg``)."""
        return self.content_type.partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        """The whole file, for an SDK that takes bytes (held once, never copied again)."""
        chunks: list[bytes] = []
        async with self.open() as stream:
            async for chunk in stream:
                chunks.append(chunk)
        return b"".join(chunks)


@runtime_checkable
class FileSender(Protocol):
    """An adapter that sends files natively."""

    def file_limit(self, kind: MediaKind, content_type: str) -> int | None:
        """The largest file of ``kind`` and type the provider takes from a bot, in bytes;
        ``None`` when it takes none (it then goes as a link)."""

    caption_limit: int
    fetches_by_url: bool  # the provider fetches the file from our URL (Twilio's MediaUrl)

    async def send_file(self, conversation: str, file: OutboundFile) -> SendResult:
        """Send the file with its caption; :class:`~channels.base.SendError` subclasses as
        for a text send."""


def kind_of(content_type: str | None, filename: str | None = None) -> MediaKind:
    """The kind a file goes as: images a chat app shows inline, audio, video, else a
    document (a GIF, an SVG or a TIFF is a document: not every provider shows them)."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media in ("image/jpeg", "image/png", "image/webp"):
        return MediaKind.IMAGE
    if media.startswith("audio/"):
        return MediaKind.AUDIO
    if media.startswith("video/"):
        return MediaKind.VIDEO
    return MediaKind.DOCUMENT
