"""The blob contract: files (media, documents) kept by key, streamed in and out.

Two backends pass the same contract suite (``tests/storage/test_blobs_contract.py``):
:mod:`storage.blobs_fs` (the default, under the data directory) and
:mod:`storage.blobs_s3` (any S3-compatible server through aioboto3). Keys are made by
:mod:`storage.blob_keys` in General Bots' drive layout, scoped by bot.

Nothing is ever held whole: :meth:`BlobStore.put` reads its stream a chunk at a time,
counting and hashing as it goes, and stops at ``max_bytes`` (nothing is stored then);
:meth:`BlobStore.open` hands the bytes back a chunk at a time. A put is atomic: a key
names a whole object or nothing, never a half-written one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from storage.base import StorageError

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_KEY_BYTES = 1024  # S3's limit
MAX_SEGMENT_BYTES = 255  # a file name on every filesystem we run on

_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_FORBIDDEN_IN_KEY = re.compile(r"[\x00-\x1f\x7f\\]")


class BlobError(StorageError):
    """The store failed (unreachable, refused, out of space): a failure on our side."""


class BlobNotFound(LookupError):
    """No object has this key."""


class BlobTooLarge(Exception):
    """The stream went past ``max_bytes``; it was cut off there and nothing was stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than the limit of {limit} bytes")
        self.limit = limit


class InvalidBlobKey(ValueError):
    """A key that could escape its folder, or that a backend cannot hold."""


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What a put stored: its size and SHA-256 are of the bytes as they were streamed."""

    key: str
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True, slots=True)
class BlobStat:
    """An object's size, content type and last change, without its bytes."""

    key: str
    size: int
    content_type: str
    modified: datetime


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive (HTTP's convention); ``end`` None: to the end."""

    start: int
    end: int | None = None


class BlobReader(Protocol):
    """An open object: its stat and its bytes (all of them, or the range asked for)."""

    @property
    def stat(self) -> BlobStat: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The bytes, a chunk at a time (at most the store's ``chunk_size`` each)."""


class BlobStore(Protocol):
    """Objects by key. Keys are ``/``-separated relative paths (see :func:`check_key`)."""

    chunk_size: int

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        """Store the stream under ``key``, replacing what was there, all at once or not at all.

        Raises :class:`BlobTooLarge` (nothing stored, the stream left unread past the
        limit), :class:`InvalidBlobKey`, :class:`BlobError` when the store fails; an error
        raised by the stream itself passes through, nothing stored.
        """

    async def stat(self, key: str) -> BlobStat | None:
        """The object's stat, ``None`` when there is none."""

    def open(
        self, key: str, *, byte_range: ByteRange | None = None
    ) -> AbstractAsyncContextManager[BlobReader]:
        """Read the object (or a range of it, clamped to its size) in an ``async with``.

        Raises :class:`BlobNotFound` on entering when there is none.
        """

    async def delete(self, key: str) -> bool:
        """Remove the object; ``False`` when there was none."""

    async def presigned_url(
        self, key: str, *, expires_in: int, filename: str | None, content_type: str | None
    ) -> str | None:
        """A URL anyone may GET the object from until it expires, signed by the store itself
        (S3), or ``None`` when the store has none to give (the gateway then serves it)."""

    async def ping(self) -> bool:
        """Whether the store answers, for ``/ready``."""

    async def close(self) -> None:
        """Release the store's clients."""


def check_key(key: str) -> str:
    """``key`` when it is a safe relative path, else :class:`InvalidBlobKey`.

    Refused: empty segments (``a//b``, a leading or trailing ``/``), ``.`` and ``..``,
    segments starting with a dot, backslashes and control characters, and keys or segments
    longer than S3 or a filesystem can hold. What is left cannot leave the store's root on
    any backend.
    """
    if not isinstance(key, str) or not key:
        raise InvalidBlobKey("a blob key must be a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidBlobKey(f"a blob key is at most {MAX_KEY_BYTES} bytes")
    if _FORBIDDEN_IN_KEY.search(key):
        raise InvalidBlobKey("a blob key has no control characters or backslashes")
    for segment in key.split("/"):
        if not segment:
            raise InvalidBlobKey(f"empty path segment in blob key {key!r}")
        if segment.startswith("."):
            raise InvalidBlobKey(f"a blob key's segments do not start with a dot: {key!r}")
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise InvalidBlobKey(f"a blob key's segments are at most {MAX_SEGMENT_BYTES} bytes")
    return key


def normal_content_type(content_type: str | None) -> str:
    """A provider's content type reduced to ``type/subtype`` in lower case (parameters such
    as ``codecs=opus`` kept), or ``application/octet-stream`` for anything unreadable."""
    if not content_type:
        return DEFAULT_CONTENT_TYPE
    media, _, params = content_type.strip().partition(";")
    media = media.strip().lower()
    if not _CONTENT_TYPE.fullmatch(media) or len(content_type) > 200:
        return DEFAULT_CONTENT_TYPE
    params = "; ".join(p.strip() for p in params.split(";") if p.strip())
    if params and not any(c in params for c in '\r\n"\\'):
        return f"{media}; {params}"
    return media


class MeteredStream:
    """A stream passed through: counted, hashed, and stopped past ``max_bytes``.

    Both backends read their input through it, so the limit and the digest mean the same
    on each. The chunk that crosses the limit raises :class:`BlobTooLarge` before it is
    handed on; nothing after it is read.
    """

    def __init__(self, data: AsyncIterable[bytes], max_bytes: int | None) -> None:
        self._data = data
        self._max = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._data:
            if not chunk:
                continue
            self.size += len(chunk)
            if self._max is not None and self.size > self._max:
                raise BlobTooLarge(self._max)
            self._hash.update(chunk)
            yield chunk
            del chunk  # not kept while the next one is read: one chunk in memory, not two


def clamp(byte_range: ByteRange | None, size: int) -> tuple[int, int]:
    """The ``[start, stop)`` slice a range reads of an object of ``size`` bytes."""
    if byte_range is None:
        return 0, size
    start = min(max(byte_range.start, 0), size)
    stop = size if byte_range.end is None else min(byte_range.end + 1, size)
    return start, max(stop, start)
