"""The blob store on the local filesystem: the default, under ``<data dir>/blobs``.

    blobs/objects/<key>        the bytes, a plain file an operator can open
    blobs/meta/<key>.json      its content type, size and SHA-256
    blobs/tmp/                 puts in progress (same filesystem, so a rename is atomic)

A put streams into a temporary file, flushes it to disk and renames it over the key:
readers see the old object or the new one, never a part. Keys go through
:func:`~storage.blobs_base.check_key` and the resolved path is checked to lie under the
root again, so no key (nor a symlink planted inside the tree) reaches outside it.
Every disk operation runs in a worker thread: the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from storage.blobs_base import (
    DEFAULT_CONTENT_TYPE,
    BlobError,
    BlobNotFound,
    BlobStat,
    ByteRange,
    InvalidBlobKey,
    MeteredStream,
    StoredBlob,
    check_key,
    clamp,
    normal_content_type,
)

DEFAULT_CHUNK = 64 * 1024


class FilesystemBlobStore:
    """:class:`~storage.blobs_base.BlobStore` under ``root``; ``chunk_size`` bounds reads."""

    def __init__(self, root: Path, *, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.root = root.resolve()
        self.chunk_size = chunk_size
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"

    async def open_store(self) -> FilesystemBlobStore:
        """Make the store's folders (and clear puts a crash left half done)."""
        await asyncio.to_thread(self._prepare)
        return self

    def _prepare(self) -> None:
        try:
            for folder in (self._objects, self._meta, self._tmp):
                folder.mkdir(parents=True, exist_ok=True)
            for leftover in self._tmp.iterdir():
                with contextlib.suppress(OSError):
                    leftover.unlink()
        except OSError as e:
            raise BlobError(f"cannot prepare the blob folder {self.root}: {e}") from e

    # -- paths ----------------------------------------------------------------------------

    def _path(self, tree: Path, key: str, suffix: str = "") -> Path:
        check_key(key)
        path = tree.joinpath(*key.split("/"))
        if suffix:
            path = path.with_name(path.name + suffix)
        # The key is checked already; this also catches a symlink inside the tree.
        if not path.resolve().is_relative_to(tree):
            raise InvalidBlobKey(f"blob key {key!r} leads outside the store")
        return path

    # -- writing --------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        target = self._path(self._objects, key)
        meta = self._path(self._meta, key, ".json")
        ctype = normal_content_type(content_type)
        metered = MeteredStream(data, max_bytes)
        try:
            handle, temp = await asyncio.to_thread(self._temp)
        except OSError as e:
            raise BlobError(f"cannot write blob {key!r}: {e}") from e
        try:
            async for chunk in metered:
                box = [chunk]
                del chunk  # the worker thread takes the only reference, and drops it when done
                await _on_disk(key, _write_taking, handle, box)
            info = {"content_type": ctype, "size": metered.size, "sha256": metered.sha256}
            await _on_disk(key, self._commit, handle, temp, target, meta, info)
        except BaseException:
            # The stream's own errors pass through as they are; nothing is left behind.
            await asyncio.shield(asyncio.to_thread(_discard, handle, temp))
            raise
        return StoredBlob(key=key, size=metered.size, sha256=metered.sha256, content_type=ctype)

    def _temp(self) -> tuple[BinaryIO, Path]:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        # A buffered file: closing it waits for a write still running in another thread,
        # so a cancelled put can never write into a reused descriptor.
        return os.fdopen(fd, "wb", buffering=io.DEFAULT_BUFFER_SIZE), Path(name)

    def _commit(
        self, handle: BinaryIO, temp: Path, target: Path, meta: Path, info: dict[str, object]
    ) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        meta.parent.mkdir(parents=True, exist_ok=True)
        # The metadata first: an object is never visible without it.
        meta_temp = self._tmp / (temp.name + ".json")
        meta_temp.write_text(json.dumps(info))
        os.replace(meta_temp, meta)
        os.replace(temp, target)

    async def delete(self, key: str) -> bool:
        target = self._path(self._objects, key)
        meta = self._path(self._meta, key, ".json")

        def remove() -> bool:
            try:
                target.unlink()
            except FileNotFoundError:
                return False
            with contextlib.suppress(FileNotFoundError):
                meta.unlink()
            return True

        try:
            return await asyncio.to_thread(remove)
        except OSError as e:
            raise BlobError(f"cannot delete blob {key!r}: {e}") from e

    # -- reading --------------------------------------------------------------------------

    async def stat(self, key: str) -> BlobStat | None:
        target = self._path(self._objects, key)
        meta = self._path(self._meta, key, ".json")
        try:
            return await asyncio.to_thread(_stat, key, target, meta)
        except OSError as e:
            raise BlobError(f"cannot read blob {key!r}: {e}") from e

    @contextlib.asynccontextmanager
    async def open(
        self, key: str, *, byte_range: ByteRange | None = None
    ) -> AsyncIterator[_FileReader]:
        target = self._path(self._objects, key)
        meta = self._path(self._meta, key, ".json")

        def opened() -> tuple[BlobStat | None, BinaryIO | None]:
            stat = _stat(key, target, meta)
            if stat is None:
                return None, None
            return stat, target.open("rb")

        try:
            stat, handle = await asyncio.to_thread(opened)
        except FileNotFoundError:
            stat, handle = None, None  # deleted between the stat and the open
        except OSError as e:
            raise BlobError(f"cannot read blob {key!r}: {e}") from e
        if stat is None or handle is None:
            raise BlobNotFound(key)
        try:
            yield _FileReader(stat, handle, byte_range, self.chunk_size)
        finally:
            await asyncio.to_thread(handle.close)

    async def presigned_url(
        self, key: str, *, expires_in: int, filename: str | None, content_type: str | None
    ) -> str | None:
        return None  # the gateway serves files of the filesystem store

    async def ping(self) -> bool:
        return await asyncio.to_thread(os.access, self._objects, os.W_OK)

    async def close(self) -> None:
        return None


class _FileReader:
    """An open object file, read a chunk at a time in a worker thread."""

    def __init__(
        self, stat: BlobStat, handle: BinaryIO, byte_range: ByteRange | None, chunk_size: int
    ) -> None:
        self.stat = stat
        self._handle = handle
        self._start, self._stop = clamp(byte_range, stat.size)
        self._chunk = chunk_size

    async def chunks(self) -> AsyncIterator[bytes]:
        left = self._stop - self._start
        if self._start:
            await asyncio.to_thread(self._handle.seek, self._start)
        while left > 0:
            try:
                chunk = await asyncio.to_thread(self._handle.read, min(self._chunk, left))
            except OSError as e:
                raise BlobError(f"cannot read blob {self.stat.key!r}: {e}") from e
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


def _stat(key: str, target: Path, meta: Path) -> BlobStat | None:
    try:
        found = target.stat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a key below another object's name
    content_type = DEFAULT_CONTENT_TYPE
    try:
        info = json.loads(meta.read_text())
        # Metadata of an older object of the same key (a crash between two renames) is
        # not believed.
        if info.get("size") == found.st_size:
            content_type = str(info.get("content_type") or DEFAULT_CONTENT_TYPE)
    except (OSError, ValueError, AttributeError):
        pass
    return BlobStat(
        key=key,
        size=found.st_size,
        content_type=content_type,
        modified=datetime.fromtimestamp(found.st_mtime, UTC),
    )


def _write_taking(handle: BinaryIO, box: list[bytes]) -> None:
    """Write the chunk in ``box`` and let it go at once: the thread pool keeps its task's
    arguments a moment longer, which would keep two chunks in memory instead of one."""
    handle.write(box.pop())


async def _on_disk(key: str, operation: Callable[..., object], *args: object) -> None:
    """A disk operation in a worker thread; a failure of the disk is :class:`BlobError`."""
    try:
        await asyncio.to_thread(operation, *args)
    except OSError as e:
        raise BlobError(f"cannot write blob {key!r}: {e}") from e


def _discard(handle: BinaryIO, temp: Path) -> None:
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(OSError):
        temp.unlink()
