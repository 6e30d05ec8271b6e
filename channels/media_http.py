"""Downloading a user's file from a provider over aiohttp, streamed, with one error mapping.

Every channel's fetcher ends here: :func:`download` opens the GET, maps the provider's
status to :class:`~channels.base.MediaError` subclasses in :func:`status_error` (the one
place that does), refuses a declared size over the channel's limit before reading a byte,
and hands the body on a chunk at a time. Nothing of the URL reaches an error message:
Telegram's file URLs carry the bot's token.

Downloads go through :func:`media_session`, whose sockets keep what one read takes off the
network small: left to itself, the event loop reads up to 256 KiB at a time (asyncio
allocates that much for every ``recv``; uvloop hands over up to 256 KiB a read) and
aiohttp slices 64 KiB chunks off those reads, copying what is left, so a download held
~0.9 MiB above idle whatever the file's size, 14 times the chunk, before the store saw a
byte. Here every ``recv`` asks for at most :data:`READ_SIZE` bytes (asyncio's loop), the
kernel's receive buffer is held to :data:`RECEIVE_BUFFER` where the loop reads the socket
itself (uvloop: libuv reads what the kernel holds), and aiohttp's own buffer pauses the
socket past :data:`READ_SIZE`: a download is then under twice the chunk above idle
(``bench/bench_media_upload.py``). The cost of the smaller kernel buffer (a smaller TCP
window, so a slower download over long distances) is paid under uvloop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType

from channels.base import (
    MediaError,
    MediaGone,
    MediaInfo,
    MediaRefused,
    MediaTooLarge,
    MediaUnavailable,
)
from channels.private_addresses import ForbiddenAddress, guarded_socket_factory

CHUNK = 64 * 1024
READ_SIZE = 16 * 1024  # the most one read of a download's socket takes
RECEIVE_BUFFER = 32 * 1024  # the kernel's receive buffer, where the loop reads it itself
MAX_REDIRECTS = 5
# Big files on slow links take minutes; a silent socket does not.
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=600, connect=10, sock_connect=10, sock_read=30)
MiB = 1024 * 1024


class BoundedReadSocket(socket.socket):
    """A socket whose reads take at most :data:`READ_SIZE` bytes, however many asyncio's
    transport asks for (it allocates what it asks for, 256 KiB, before a byte arrives)."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return super().recv(min(bufsize, READ_SIZE), flags)

    def recv_into(self, buffer: object, nbytes: int = 0, flags: int = 0) -> int:
        size = len(memoryview(buffer))  # type: ignore[arg-type]
        wanted = min(nbytes or size, READ_SIZE)
        return super().recv_into(buffer, wanted, flags)  # type: ignore[arg-type]


def _reads_the_socket_itself(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the loop reads sockets behind Python's back (uvloop), not through recv."""
    return not isinstance(loop, asyncio.BaseEventLoop)


def bounded_socket(addr_info: AddrInfoType) -> socket.socket:
    """A download's socket (see the module's docstring)."""
    family, type_, proto, _, _ = addr_info
    sock = BoundedReadSocket(family=family, type=type_, proto=proto)
    try:
        if _reads_the_socket_itself(asyncio.get_running_loop()):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    except BaseException:
        sock.close()
        raise
    return sock


def media_session(
    *,
    refuse: Callable[[str], bool] | None = None,
    timeout: aiohttp.ClientTimeout | None = None,
) -> aiohttp.ClientSession:
    """An HTTP session for downloading users' files, read in small pieces (see the module's
    docstring); ``refuse`` names addresses never connected to (the private-address guard).
    Make it inside the running loop."""
    factory: SocketFactoryType = (
        bounded_socket if refuse is None else guarded_socket_factory(refuse, then=bounded_socket)
    )
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(socket_factory=factory),
        read_bufsize=READ_SIZE,  # aiohttp pauses the socket past twice this
        timeout=timeout or DOWNLOAD_TIMEOUT,
        trust_env=False,
    )


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
