"""The files dialogs send (``SEND FILE TO``): found, kept in the blob store, attached.

A dialog names a file by

* a URL of ours (``/media/{token}``, what ``HEAR x AS IMAGE`` or ``AS FILE`` gives): the
  stored file itself, when the token is valid and the file is the bot's;
* a blob key in the bot's folder (``{bot}/users/…``): that file;
* any other ``http(s)`` URL: fetched once, through the dialogs' guarded HTTP client (never a
  private address, unless the bot's ``HTTP Allow Private`` says so), streamed into
  ``{bot}/users/{user}@{channel}/outbox/{digest}/{name}``;
* a path in the bot's drive (the package's ``{bot}.gbdrive`` folder): copied into
  ``{bot}/{bot}.gbdrive/{path}``, once, and again only when the file on disk changed.

The reply then carries an :class:`~channels.base.Attachment` with that key, which the
delivery worker streams to the provider. A file that is not there, a URL that fails, a
file over :data:`MAX_FILE` are the dialog's errors (:class:`FileNotSendable`, which it can
catch with ``ON ERROR RESUME NEXT`` as General Bots' "Failed to send file"); a blob store
that fails raises its :class:`~storage.blobs_base.BlobError`, a failure of ours.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from channels.base import Attachment
from channels.outbound_media import MiB, kind_of
from pipeline.bots import Bot
from pipeline.outbound_http import HttpCallError, OutboundHttp
from storage.blob_keys import bot_prefix, file_name, segment, user_prefix
from storage.blob_urls import MEDIA_PATH, MediaTokenError, MediaUrls
from storage.blobs_base import (
    DEFAULT_CONTENT_TYPE,
    BlobStore,
    BlobTooLarge,
    InvalidBlobKey,
    check_key,
    normal_content_type,
)

MAX_FILE = 100 * MiB  # the largest file any channel takes from a bot (WhatsApp documents)
DOWNLOAD_SECONDS = 60.0
DRIVE_SUFFIX = ".gbdrive"


class FileNotSendable(Exception):
    """The dialog named a file that cannot be sent; the message says why."""


class OutboundFiles:
    """Turns what a dialog names into a stored file to attach (see the module's doc)."""

    def __init__(
        self,
        blobs: BlobStore,
        urls: MediaUrls | None = None,
        http: OutboundHttp | None = None,
        *,
        max_bytes: int = MAX_FILE,
    ) -> None:
        self.blobs = blobs
        self.urls = urls
        self._http = http
        self._max = max_bytes

    async def attachment(
        self, bot: Bot, channel: str, user: str, file: Any, caption: str = ""
    ) -> Attachment:
        """The attachment of ``file`` for a message to ``user`` on ``channel``."""
        if not isinstance(file, str) or not file.strip():
            raise FileNotSendable("the file must be a path, a stored file's URL or a URL")
        name = file.strip()
        key = self._our_key(bot, name)
        if key is None and name.lower().startswith(("http://", "https://")):
            key, content_type = await self._download(bot, channel, user, name)
        elif key is None:
            key = await self._from_drive(bot, name)
            content_type = None
        else:
            content_type = None
        stat = await self.blobs.stat(key)
        if stat is None:
            raise FileNotSendable(f"{name!r}: the stored file is gone")
        filename = key.rsplit("/", 1)[-1]
        media = normal_content_type(content_type or stat.content_type)
        if media == DEFAULT_CONTENT_TYPE:
            media = mimetypes.guess_type(filename)[0] or DEFAULT_CONTENT_TYPE
        return Attachment(
            kind=kind_of(media, filename),
            content_type=media,
            filename=filename,
            size=stat.size,
            caption=caption or None,
            key=key,
        )

    # -- a file we hold ------------------------------------------------------------------

    def _our_key(self, bot: Bot, name: str) -> str | None:
        """The key a media URL of ours or a blob key names, ``None`` for anything else."""
        path = urlsplit(name).path if "://" in name else name
        if path.startswith(MEDIA_PATH) and self.urls is not None:
            try:
                key = self.urls.tokens.read(path[len(MEDIA_PATH) :]).key
            except MediaTokenError as e:
                raise FileNotSendable(f"{name!r}: {e}") from e
        elif "://" not in name and name.startswith(bot_prefix(bot.name) + "users/"):
            key = name
        else:
            return None
        if not key.startswith(bot_prefix(bot.name)):
            raise FileNotSendable(f"{name!r} is not a file of bot {bot.name!r}")
        try:
            return check_key(key)
        except InvalidBlobKey as e:
            raise FileNotSendable(f"{name!r}: {e}") from e

    # -- a URL -----------------------------------------------------------------------------

    async def _download(self, bot: Bot, channel: str, user: str, url: str) -> tuple[str, str]:
        if self._http is None:
            raise FileNotSendable(f"{url}: no HTTP client here to fetch it with")
        digest = hashlib.sha256(url.encode()).hexdigest()[:32]
        last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        try:
            async with self._http.download(
                url, policy=bot.http, within=DOWNLOAD_SECONDS
            ) as response:
                content_type = normal_content_type(response.headers.get("Content-Type"))
                if content_type == DEFAULT_CONTENT_TYPE:
                    content_type = mimetypes.guess_type(last)[0] or DEFAULT_CONTENT_TYPE
                name = file_name(last or None, kind="file", content_type=content_type)
                key = check_key(f"{user_prefix(bot.name, channel, user)}outbox/{digest}/{name}")
                await self.blobs.put(
                    key,
                    response.content.iter_chunked(self.blobs.chunk_size),
                    content_type=content_type,
                    max_bytes=self._max,
                )
        except HttpCallError as e:
            raise FileNotSendable(str(e)) from e
        except BlobTooLarge as e:
            raise FileNotSendable(f"{url}: the file is {e}") from e
        return key, content_type

    # -- the bot's drive ---------------------------------------------------------------------

    async def _from_drive(self, bot: Bot, name: str) -> str:
        drive = bot.package.path / f"{bot.name}{DRIVE_SUFFIX}"
        relative = PurePosixPath(name.replace("\\", "/").lstrip("/"))
        if relative.parts[:1] == (drive.name,):  # "shop.gbdrive/menu.pdf" names it too
            relative = PurePosixPath(*relative.parts[1:])
        if not relative.parts or any(p in ("..", ".") or p.startswith(".") for p in relative.parts):
            raise FileNotSendable(f"{name!r} is not a path in the bot's drive")
        path = drive.joinpath(*relative.parts)
        found = await asyncio.to_thread(_drive_file, drive, path)
        if found is None:
            raise FileNotSendable(f"no file {name!r} in the bot's drive ({drive.name})")
        size, mtime = found
        key = check_key(
            bot_prefix(bot.name)
            + "/".join((segment(drive.name), *(segment(p) for p in relative.parts)))
        )
        stat = await self.blobs.stat(key)
        if stat is not None and stat.size == size and stat.modified.timestamp() >= mtime:
            return key  # copied before, unchanged since
        if size > self._max:
            raise FileNotSendable(f"{name!r} is larger than the limit of {self._max} bytes")
        content_type = mimetypes.guess_type(path.name)[0] or DEFAULT_CONTENT_TYPE
        await self.blobs.put(
            key, _file_chunks(path, self.blobs.chunk_size), content_type=content_type
        )
        return key


def _drive_file(drive: Path, path: Path) -> tuple[int, float] | None:
    """The size and change time of a regular file inside ``drive`` (links resolved)."""
    try:
        real = path.resolve(strict=True)
        if not real.is_relative_to(drive.resolve(strict=True)) or not real.is_file():
            return None
        stat = real.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime


async def _file_chunks(path: Path, chunk_size: int) -> AsyncIterator[bytes]:
    """A file's bytes a chunk at a time, each read in a thread (never on the loop)."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, chunk_size):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)
