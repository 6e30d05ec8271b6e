"""Files a bot sends: what an adapter gets to send one natively, and what it can send.

The delivery worker hands an adapter that has ``send_file`` (:class:`FileSender`) an
:class:`OutboundFile`: its kind, name, type, size and caption, a way to stream its bytes
from our storage, a signed URL for providers that fetch media themselves (Twilio), and the
provider's id of an upload made by an earlier attempt (WhatsApp's media id), which the
adapter reuses instead of uploading again; ``uploaded`` is told of a new one so that a
retry finds it; ``about_to_send`` is awaited before the request that reaches the user (the
message after an upload), so that only that request counts as possibly sent. Which files a
channel takes, and how large, is the adapter's
:meth:`FileSender.file_limit`; a file it cannot take goes out as a link instead.

This module imports nothing of ours but :mod:`channels.base`.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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
    # Awaited just before the request that reaches the user (after an upload, which does
    # not): from then on the send may have happened, and is never repeated blindly.
    sending: Callable[[], Awaitable[None]] | None = None

    async def about_to_send(self) -> None:
        if self.sending is not None:
            await self.sending()

    @property
    def media_type(self) -> str:
        """The content type without its parameters (``audio/ogg; codecs=opus`` → ``audio/ogg``)."""
        return self.content_type.partition(";")[0].strip().lower()

    async def held(self) -> HeldFile:
        """The whole file in memory, for an SDK that reads a file object: held once (one
        buffer of its size, filled a chunk at a time), never copied whole again."""
        buffer = bytearray(self.size)
        end = 0
        async with self.open() as stream:
            async for chunk in stream:
                buffer[end : end + len(chunk)] = chunk  # grows past a size that was wrong
                end += len(chunk)
        del buffer[end:]
        return HeldFile(buffer)


class HeldFile(io.RawIOBase):
    """A read-only, seekable file over a buffer: reads copy a chunk, never the whole."""

    def __init__(self, buffer: bytearray) -> None:
        super().__init__()
        self._view = memoryview(buffer)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        n = max(0, min(len(target), len(self._view) - self._position))
        target[:n] = self._view[self._position : self._position + n]
        self._position += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def tell(self) -> int:
        return self._position


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
