"""``GET "path"``: a file of the bot's drive, as text, the way General Bots reads it.

General Bots (its ``get_from_bucket``) reads ``path`` from the bot's bucket
(``{bot}.gbai``, which holds the package), so ``GET "announcements.gbkb/news/news.pdf"``
names a file of the package; a PDF comes back as its text, anything else as UTF-8 text,
and a path that could leave the bucket (``..``, a leading ``/``, ``~``, ``*``, ``?``,
``//``, a drive letter) is refused. Here the bot's drive is its package folder, and then
the blob store under the bot's folder (``{bot}/{path}``, where files the bot keeps go;
under ``users/``, only the current user's own folder);
``.docx`` is read to text too (General Bots would refuse its bytes as not UTF-8). The
package's ``.gbot`` folder is not given (its config.csv holds the bot's keys: a dialog
that builds a path from what a user typed must not hand them out).
PDF and ``.docx`` are parsed in the parser processes, never on the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

from pipeline.kb.documents import UnreadableDocument
from pipeline.kb.parser_processes import parse_in_process, read_off_loop
from pipeline.kb.readers import read_document
from storage.blob_keys import bot_prefix, user_prefix
from storage.blobs_base import BlobNotFound, BlobStore, InvalidBlobKey

MAX_BYTES = 20 * 1024 * 1024  # a drive file read whole, to be parsed or decoded


class DriveFileError(Exception):
    """The file cannot be given: a refused path, none there, too large, unreadable."""


def check_path(path: str) -> str:
    """``path`` when it stays inside the drive (General Bots' ``is_safe_path``)."""
    text = path.strip()
    if (
        not text
        or ".." in text
        or text.startswith(("/", "\\"))
        or (len(text) >= 2 and text[1] == ":")
        or any(bad in text for bad in ("//", "~", "*", "?", "\\", "\x00"))
    ):
        raise DriveFileError(f"GET {path!r}: not a path inside the bot's drive")
    if text.split("/", 1)[0].lower().endswith(".gbot"):
        raise DriveFileError(f"GET {path!r}: the bot's settings are not given out")
    return text


def _read_package_file(root: Path, path: str) -> bytes | None:
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        return None  # a link out of the package is treated as no file
    if target.stat().st_size > MAX_BYTES:
        raise DriveFileError(f"GET {path!r}: larger than {MAX_BYTES // (1024 * 1024)} MB")
    return target.read_bytes()


async def _read_blob(blobs: BlobStore, key: str, path: str) -> bytes | None:
    try:
        stat = await blobs.stat(key)
        if stat is None:
            return None
        if stat.size > MAX_BYTES:
            raise DriveFileError(f"GET {path!r}: larger than {MAX_BYTES // (1024 * 1024)} MB")
        async with blobs.open(key) as reader:
            return b"".join([chunk async for chunk in reader.chunks()])
    except (BlobNotFound, InvalidBlobKey):
        return None


async def read_drive_file(
    bot: str,
    package_root: Path,
    blobs: BlobStore | None,
    path: str,
    *,
    user: tuple[str, str] | None = None,
) -> str:
    """The text of the drive file ``path`` (see the module's docstring); ``user`` is the
    conversation's (channel, user id), whose own files under ``users/`` may be read.

    Raises :class:`DriveFileError`; a store that fails raises its
    :class:`~storage.blobs_base.BlobError` (the turn is then run again).
    """
    path = check_path(path)
    data = await asyncio.to_thread(_read_package_file, package_root, path)
    key = bot_prefix(bot) + path
    if data is None and blobs is not None:
        own = user_prefix(bot, *user) if user is not None else None
        in_users = key.startswith(bot_prefix(bot) + "users/")
        if in_users and (own is None or not key.startswith(own)):
            raise DriveFileError(f"GET {path!r}: another user's files are not given out")
        data = await _read_blob(blobs, key, path)
    if data is None:
        raise DriveFileError(f"GET {path!r}: no such file in the bot's drive")
    source = PurePosixPath(path).name
    if parse_in_process(source):
        try:
            read = await read_off_loop(source, True, None, read_document, source, data)
        except UnreadableDocument as e:
            raise DriveFileError(f"GET {path!r}: {e.reason}") from e
        return "\n\n".join(s.text.strip() for s in read.sections if s.text.strip())
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DriveFileError(f"GET {path!r}: the file is not UTF-8 text") from e
