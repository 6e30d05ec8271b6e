"""Downloading a user's file from a provider over aiohttp, streamed, with one error mapping.

Every channel's fetcher ends here: :func:`download` opens the GET, maps the provider's
status to :class:`~channels.base.MediaError` subclasses in :func:`status_error` (the one
place that does), refuses a declared size over the channel's limit before reading a byte,
and hands the body on a chunk at a time. Nothing of the URL reaches an error message:
Telegram's file URLs carry the bot's token.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp

from channels.base import (
    MediaError,
    MediaGone,
    MediaInfo,
    MediaRefused,
    MediaTooLarge,
    MediaUnavailable,
)
from channels.private_addresses import ForbiddenAddress

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
# Big files on slow links take minutes; a silent socket does not.
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=600, connect=10, sock_connect=10, sock_read=30)
MiB = 1024 * 1024


class HttpDownload:
    """A response whose body is read a chunk at a time."""

    def __init__(self, response: aiohttp.ClientResponse, info: MediaInfo, provider: str) -> None:
        self.info = info
        self._response = response
        self._provider = provider

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
                del chunk  # released before the next is read
        except (aiohttp.ClientError, TimeoutError) as e:
            raise MediaUnavailable(
                f"{self._provider}: the download broke off ({type(e).__name__})"
            ) from e


@contextlib.asynccontextmanager
async def download(
    session: aiohttp.ClientSession,
    url: str,
    *,
    provider: str,
    limit: int,
    headers: Mapping[str, str] | None = None,
    info: MediaInfo | None = None,
) -> AsyncIterator[HttpDownload]:
    """GET ``url`` and yield its body; ``info`` is what the provider said before (its
    content type and size win over the download's headers when they say nothing)."""
    known = info or MediaInfo()
    if known.size is not None and known.size > limit:
        raise MediaTooLarge(
            f"{provider}: the file has {known.size} bytes, over the limit of {limit}", limit=limit
        )
    try:
        response = await session.get(
            url,
            headers=dict(headers or {}),
            timeout=DOWNLOAD_TIMEOUT,
            allow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        )
    except aiohttp.TooManyRedirects as e:
        raise MediaGone(f"{provider}: more than {MAX_REDIRECTS} redirects") from e
    except aiohttp.ClientConnectorError as e:
        if refused_by_guard(e):
            raise MediaRefused(
                f"{provider}: the file is on a private, loopback or reserved address"
            ) from e
        raise MediaUnavailable(f"{provider}: cannot connect ({type(e).__name__})") from e
    except (aiohttp.ClientError, TimeoutError) as e:
        raise MediaUnavailable(f"{provider}: no answer ({type(e).__name__})") from e
    try:
        if response.status >= 300:
            raise status_error(provider, response.status)
        declared = response.content_length
        size = known.size if known.size is not None else declared
        if size is not None and size > limit:
            raise MediaTooLarge(
                f"{provider}: the file has {size} bytes, over the limit of {limit}", limit=limit
            )
        yield HttpDownload(
            response,
            MediaInfo(
                content_type=known.content_type or response.headers.get("Content-Type"),
                size=size,
                filename=known.filename,
                sha256=known.sha256,
            ),
            provider,
        )
    finally:
        if response.content.at_eof():
            response.release()
        else:
            response.close()  # a download cut short: the connection cannot be reused


def status_error(provider: str, status: int) -> MediaError:
    """The one mapping of a provider's HTTP status for a file to our errors."""
    if status == 429 or status == 408 or status >= 500:
        return MediaUnavailable(f"{provider}: answered {status}")
    if status in (401, 403):
        return MediaGone(
            f"{provider}: answered {status} (an expired link, or credentials it refused)",
            status=status,
        )
    return MediaGone(f"{provider}: answered {status}", status=status)


def refused_by_guard(error: aiohttp.ClientConnectorError) -> bool:
    """Whether the connection was refused by our private-address guard."""
    cause: BaseException | None = error.os_error
    while cause is not None:
        if isinstance(cause, ForbiddenAddress) or "private or reserved address" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
