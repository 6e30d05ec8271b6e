"""HTTP calls made by dialogs (GET "https://…", POST, PUT, PATCH, DELETE HTTP).

Two client sessions share the process: a guarded one, whose every socket is checked against
the address it is about to connect to (after DNS, on each redirect hop, so a name that
resolves to a public address at one moment and to ``127.0.0.1`` the next cannot slip through),
and an open one for bots whose config.csv says ``HTTP Allow Private,true``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
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
        except TimeoutError as e:
            raise HttpCallError(f"{what} took longer than {policy.timeout:g} s") from e
        except aiohttp.TooManyRedirects as e:
            raise HttpCallError(f"{what}: more than {MAX_REDIRECTS} redirects") from e
        except aiohttp.ClientConnectorError as e:
            if _refused(e):
                raise HttpCallError(
                    f"{what}: refused to connect to {e.host}, a private, loopback or reserved "
                    "address (set 'HTTP Allow Private' to true in config.csv to allow it)"
                ) from e
            raise HttpCallError(f"{what}: cannot connect ({e.os_error})") from e
        except aiohttp.InvalidURL as e:
            raise HttpCallError(f"{what}: invalid URL") from e
        except aiohttp.ClientError as e:
            raise HttpCallError(f"{what} failed: {type(e).__name__}: {e}") from e


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
