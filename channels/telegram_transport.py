"""python-telegram-bot's transport for the Telegram adapter, and its errors as ours.

:class:`TelegramRequest` is the ``request`` PTB's :class:`~telegram.Bot` makes its calls
through. A call without a file (a send, an edit, every call but an upload) goes on an
aiohttp session: the message path's sends are most of the adapter's work, and PTB's httpx
request (httpcore, h11 and anyio under it) was ~15-18 % of the gateway's CPU samples per
Telegram message, the aiohttp one ~3 % (bench/bench_webhooks.py). An upload keeps PTB's
httpx client, which reads a file a chunk at a time as it writes the multipart body. Both
keep their connections alive, at most ``connection_pool_size`` at once.

PTB raises one :class:`~telegram.error.NetworkError` for a refused connection,
a connection dropped mid-exchange and any HTTP status it has no class for (5xx,
413, …). :class:`TelegramRequest` keeps the status of the last kind, and
:func:`send_error` reads the rest from the transport's exception chained as
``__cause__`` (httpx's or aiohttp's): whether the request had left decides between
"retry" and "the message may have been sent".
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from datetime import timedelta

import aiohttp
import httpx
import orjson
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import BaseRequest, HTTPXRequest, RequestData
from telegram.warnings import PTBDeprecationWarning

from channels.base import (
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
    SendError,
    SendRefused,
)

_TOKEN_IN_URL = re.compile(r"/(file/)?bot\d+:[A-Za-z0-9_-]+")


def redacted(text: str) -> str:
    """``text`` with ``/bot<redacted>`` for the token of each Bot API URL in it."""
    return _TOKEN_IN_URL.sub(lambda m: f"/{m.group(1) or ''}bot<redacted>", text)


class TokenRedactor(logging.Filter):
    """Writes ``/bot<redacted>`` for the token in the Bot API URLs that httpx logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _TOKEN_IN_URL.search(message):
            record.msg = redacted(message)
            record.args = None
        return True


for _name in ("httpx", "telegram", "telegram.ext"):
    logging.getLogger(_name).addFilter(TokenRedactor())

# Statuses PTB turns into a specific error; it folds every other one into NetworkError.
_STATUSES_PTB_MAPS = frozenset({400, 401, 403, 404, 409})


class HTTPStatusError(NetworkError):
    """The Bot API answered with an HTTP status PTB has no error class for (5xx, 413, …).

    PTB raises a bare :class:`NetworkError` for these, the same class as for a
    refused connection; keeping the status tells "Telegram failed" (retry) from
    "Telegram refused" (do not) and names the code to the operator.
    """

    def __init__(self, status: int, description: str) -> None:
        super().__init__(f"{description} (HTTP {status})")
        self.status = status


class NoFreeConnection(Exception):
    """Every connection of the pool stayed busy for the pool timeout: nothing was sent."""


# Causes of a TimedOut or NetworkError that mean the request never left.
_NOT_SENT_TIMEOUTS = (httpx.ConnectTimeout, httpx.PoolTimeout, aiohttp.ConnectionTimeoutError)
_NOT_CONNECTED = (httpx.ConnectError, aiohttp.ClientConnectorError)
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class TelegramRequest(HTTPXRequest):
    """PTB's request: calls without files on aiohttp, uploads on PTB's httpx client (see the
    module's doc); :class:`HTTPStatusError` where PTB would lose the status."""

    def __init__(
        self,
        *,
        connection_pool_size: int,
        connect_timeout: float,
        read_timeout: float,
        write_timeout: float,
        pool_timeout: float,
    ) -> None:
        super().__init__(
            connection_pool_size=connection_pool_size,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            pool_timeout=pool_timeout,
        )
        self._defaults = (connect_timeout, read_timeout, write_timeout, pool_timeout)
        self._pool_size = connection_pool_size
        # The pool's connections, each held from before its request to after its answer:
        # aiohttp's own limit has no timeout of its own apart from the connect's.
        self._slots = asyncio.Semaphore(connection_pool_size)
        self._session: aiohttp.ClientSession | None = None
        self._shut = False

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if request_data is not None and request_data.contains_files:
            code, payload = await super().do_request(
                url,
                method,
                request_data,
                read_timeout=read_timeout,
                write_timeout=write_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
            )
        else:
            connect, read, write, pool = self._defaults
            code, payload = await self._plain(
                url,
                method,
                request_data,
                connect=_given(connect_timeout, connect),
                read=_given(read_timeout, read),
                write=_given(write_timeout, write),
                pool=_given(pool_timeout, pool),
            )
        return _checked(code, payload)

    async def _plain(
        self,
        url: str,
        method: str,
        request_data: RequestData | None,
        *,
        connect: float | None,
        read: float | None,
        write: float | None,
        pool: float | None,
    ) -> tuple[int, bytes]:
        """A request without files, on aiohttp, its errors as PTB's (as PTB's httpx ones)."""
        session = self._plain_session()
        try:
            async with asyncio.timeout(pool):
                await self._slots.acquire()
        except TimeoutError as e:
            raise TimedOut(
                "Pool timeout: all connections in the connection pool are occupied; "
                "the request was not sent"
            ) from NoFreeConnection(str(e))
        try:
            # A bound on the whole exchange as well: aiohttp has no write timeout.
            total = (
                connect + read + write
                if connect is not None and read is not None and write is not None
                else None
            )
            timeout = aiohttp.ClientTimeout(
                total=total, connect=connect, sock_connect=connect, sock_read=read
            )
            body = request_data.url_encoded_parameters() if request_data is not None else None
            async with session.request(
                method, url, data=body, headers=_FORM if body else None, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as e:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise TimedOut from e
        except aiohttp.ClientError as e:
            # Some of aiohttp's errors name the URL, and with it the token.
            raise NetworkError(redacted(f"aiohttp.{type(e).__name__}: {e}")) from e
        finally:
            self._slots.release()

    def _plain_session(self) -> aiohttp.ClientSession:
        if self._shut:
            raise RuntimeError("This TelegramRequest is shut down")
        if self._session is None:  # made on first use: aiohttp wants a running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0),
                headers={"User-Agent": self.USER_AGENT},
                # The answers are a few hundred bytes: not asked for compressed (a compressed
                # one would still be read).
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def shutdown(self) -> None:
        self._shut = True
        await super().shutdown()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _given(value: ODVInput[float], default: float) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _checked(code: int, payload: bytes) -> tuple[int, bytes]:
    """The answer as it came, or :class:`HTTPStatusError` for a status PTB would lose."""
    if 200 <= code <= 299 or code in _STATUSES_PTB_MAPS:
        return code, payload
    try:
        answer = orjson.loads(payload)
    except orjson.JSONDecodeError:
        answer = None  # a proxy's HTML page
    if isinstance(answer, dict) and answer.get("parameters"):
        return code, payload  # retry_after or migrate_to_chat_id: PTB's own errors say more
    description = answer.get("description") if isinstance(answer, dict) else None
    # Raised from do_request, a TelegramError passes through PTB unchanged.
    raise HTTPStatusError(code, str(description or f"HTTP {code}"))


def send_error(error: TelegramError) -> SendError:
    """The one place a PTB error becomes a :class:`SendError`.

    The order matters: :class:`BadRequest` and :class:`TimedOut` are subclasses
    of :class:`NetworkError`, which PTB also raises for transport failures; the
    ``__cause__`` (the httpx exception) tells whether the request had left.
    """
    text = f"Telegram: {error.message}"
    if isinstance(error, RetryAfter):
        return RateLimited(text, code="429", retry_after=_seconds(error))
    if isinstance(error, ChatMigrated):
        # A group became a supergroup: the conversation now has another id.
        return SendRefused(text, code=f"migrated:{error.new_chat_id}")
    if isinstance(error, TimedOut):
        if isinstance(error.__cause__, (*_NOT_SENT_TIMEOUTS, NoFreeConnection)):
            return ProviderUnavailable(f"{text}: no connection in time", code="timeout")
        return OutcomeUnknown(
            f"{text}: no answer in time; the message may have been sent", code="timeout"
        )
    if isinstance(error, BadRequest):
        return SendRefused(text, code="400")
    if isinstance(error, Forbidden):
        return SendRefused(text, code="403")  # blocked by the user, kicked from the group
    if isinstance(error, InvalidToken):
        return SendRefused(text, code="401")
    if isinstance(error, HTTPStatusError):
        if error.status >= 500:
            return ProviderUnavailable(text, code=str(error.status))
        return SendRefused(text, code=str(error.status))
    if isinstance(error, NetworkError):
        if isinstance(error.__cause__, _NOT_CONNECTED):
            return ProviderUnavailable(f"{text}: cannot connect", code="connect")
        # Dropped mid-exchange, or a failure inside the HTTP stack: it may have been sent.
        return OutcomeUnknown(f"{text}: the exchange broke off", code="network")
    if type(error) is TelegramError:
        # PTB's "Invalid server response": a 2xx we cannot read, so probably sent.
        return OutcomeUnknown(text, code="bad-answer")
    return SendRefused(text, code=type(error).__name__)  # Conflict, EndPointNotFound, …


def _seconds(error: RetryAfter) -> float:
    # PTB 22 warns that retry_after becomes a timedelta; both forms are read here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
