"""HTTP calls made by dialogs (GET "https://…", POST, PUT, PATCH, DELETE HTTP) and by the
website crawler (USE WEBSITE, see :mod:`pipeline.kb.crawl`).

Two client sessions share the process: a guarded one, whose every socket is checked against
the address it is about to connect to (after DNS, on each redirect hop, so a name that
resolves to a public address at one moment and to ``127.0.0.1`` the next cannot slip through),
and an open one for bots whose config.csv says ``HTTP Allow Private,true``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from channels.private_addresses import ForbiddenAddress, forbidden, guarded_socket_factory

DEFAULT_TIMEOUT = 10.0  # seconds per request, config.csv "HTTP Timeout"
DEFAULT_MAX_BYTES = 1024 * 1024  # response body cap, config.csv "HTTP Max Response Bytes"
MAX_REDIRECTS = 5
USER_AGENT = "botserver"


class HttpCallError(Exception):
    """A dialog's HTTP call failed; the message says why in words a bot author understands."""


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """One bot's HTTP settings (config.csv)."""

    allow_private: bool = False
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES


class OutboundHttp:
    """The HTTP client of dialogs; open it in the composition root and close it there."""

    def __init__(self, *, refuse: Callable[[str], bool] = forbidden) -> None:
        self._refuse = refuse
        self._guarded: aiohttp.ClientSession | None = None
        self._open: aiohttp.ClientSession | None = None

    async def open(self) -> OutboundHttp:
        headers = {"User-Agent": USER_AGENT}
        self._guarded = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(socket_factory=guarded_socket_factory(self._refuse)),
            headers=headers,
            trust_env=False,  # a proxy would connect for us, past the guard
        )
        self._open = aiohttp.ClientSession(headers=headers, trust_env=False)
        return self

    async def close(self) -> None:
        for session in (self._guarded, self._open):
            if session is not None:
                await session.close()
        self._guarded = self._open = None

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        policy: HttpPolicy,
    ) -> Any:
        """Call ``url``; a JSON response decoded, any other as text.

        Raises :class:`HttpCallError` for refused addresses, timeouts, connection failures,
        error statuses and bodies over ``policy.max_bytes``.
        """
        session = self._open if policy.allow_private else self._guarded
        if session is None:
            raise HttpCallError("the HTTP client is not open")
        what = f"{method} {url}"
        if not url.lower().startswith(("http://", "https://")):
            raise HttpCallError(f"{what}: only http and https URLs can be called")
        options: dict[str, Any] = {}
        if isinstance(body, dict | list):
            options["json"] = body
        elif body is not None:
            options["data"] = str(body).encode()
        try:
            async with session.request(
                method,
                url,
                headers=dict(headers or {}),
                timeout=aiohttp.ClientTimeout(total=policy.timeout),
                max_redirects=MAX_REDIRECTS,
                **options,
            ) as response:
                raw = await _read_capped(response, policy.max_bytes, what)
                if response.status >= 400:
                    raise HttpCallError(f"{what} answered {response.status} {response.reason}")
                return _decode(response, raw)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _call_error(e, what, policy.timeout) from e

    async def fetch(
        self,
        url: str,
        *,
        policy: HttpPolicy,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        within: float | None = None,
        wanted: Callable[[str], bool] = lambda content_type: True,
    ) -> Fetched:
        """GET ``url`` without following redirects (the caller decides about each hop).

        The body is read only for a 200 whose content type ``wanted`` accepts, and cut at
        ``max_bytes`` (``truncated`` says so) rather than refused; it gives up after the
        policy's timeout or ``within`` seconds, whichever is shorter. Raises
        :class:`HttpCallError` for refused addresses, timeouts and connection failures;
        an error status is returned, not raised.
        """
        session = self._open if policy.allow_private else self._guarded
        if session is None:
            raise HttpCallError("the HTTP client is not open")
        what = f"GET {url}"
        if not url.lower().startswith(("http://", "https://")):
            raise HttpCallError(f"{what}: only http and https URLs can be called")
        seconds = policy.timeout if within is None else min(within, policy.timeout)
        try:
            async with session.get(
                url,
                headers=dict(headers or {}),
                timeout=aiohttp.ClientTimeout(total=seconds),
                allow_redirects=False,
            ) as response:
                content_type = response.content_type.lower()
                body, truncated = b"", False
                if response.status == 200 and wanted(content_type):
                    body, truncated = await _read_cut(response, max_bytes)
                return Fetched(
                    url=url,
                    status=response.status,
                    content_type=content_type,
                    charset=response.charset,
                    location=response.headers.get("Location"),
                    robots_tag=", ".join(response.headers.getall("X-Robots-Tag", [])),
                    body=body,
                    truncated=truncated,
                )
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _call_error(e, what, seconds) from e

    @contextlib.asynccontextmanager
    async def download(
        self, url: str, *, policy: HttpPolicy, within: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET ``url`` (redirects followed, each hop guarded) for its body to be streamed
        (``response.content.iter_chunked``) within ``within`` seconds. Raises
        :class:`HttpCallError` as :meth:`request` does, an error status included."""
        session = self._open if policy.allow_private else self._guarded
        if session is None:
            raise HttpCallError("the HTTP client is not open")
        what = f"GET {url}"
        if not url.lower().startswith(("http://", "https://")):
            raise HttpCallError(f"{what}: only http and https URLs can be called")
        try:
            async with session.get(
                url,
                timeout=aiohttp.ClientTimeout(total=within, sock_connect=policy.timeout),
                max_redirects=MAX_REDIRECTS,
            ) as response:
                if response.status >= 400:
                    raise HttpCallError(f"{what} answered {response.status} {response.reason}")
                yield response
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _call_error(e, what, within) from e


@dataclass(frozen=True, slots=True)
class Fetched:
    """One response of :meth:`OutboundHttp.fetch`: its status and headers that matter, and
    its body (empty unless read), cut at the size asked for when ``truncated``."""

    url: str
    status: int
    content_type: str
    charset: str | None
    location: str | None
    robots_tag: str
    body: bytes
    truncated: bool


def _call_error(error: BaseException, what: str, timeout: float) -> HttpCallError:
    """The words a bot author understands for a failed call."""
    if isinstance(error, TimeoutError):
        return HttpCallError(f"{what} took longer than {timeout:g} s")
    if isinstance(error, aiohttp.TooManyRedirects):
        return HttpCallError(f"{what}: more than {MAX_REDIRECTS} redirects")
    if isinstance(error, aiohttp.ClientConnectorError):
        if _refused(error):
            return HttpCallError(
                f"{what}: refused to connect to {error.host}, a private, loopback or reserved "
                "address (set 'HTTP Allow Private' to true in config.csv to allow it)"
            )
        return HttpCallError(f"{what}: cannot connect ({error.os_error})")
    if isinstance(error, aiohttp.InvalidURL):
        return HttpCallError(f"{what}: invalid URL")
    return HttpCallError(f"{what} failed: {type(error).__name__}: {error}")


def _refused(error: aiohttp.ClientConnectorError) -> bool:
    cause: BaseException | None = error.os_error
    while cause is not None:
        if isinstance(cause, ForbiddenAddress) or "private or reserved address" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


async def _read_capped(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise HttpCallError(f"{what}: response larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise HttpCallError(f"{what}: response larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_cut(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        if size + len(chunk) > limit:
            # The rest is not read: the connection is closed rather than drained.
            chunks.append(chunk[: limit - size])
            return b"".join(chunks), True
        size += len(chunk)
        chunks.append(chunk)
    return b"".join(chunks), False


def _decode(response: aiohttp.ClientResponse, raw: bytes) -> Any:
    encoding = response.charset or "utf-8"
    text = raw.decode(encoding, errors="replace")
    content_type = response.content_type.lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as e:
            raise HttpCallError(f"{response.method} {response.url}: invalid JSON ({e})") from e
    return text
