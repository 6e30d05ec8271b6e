"""python-telegram-bot's transport for the Telegram adapter, and its errors as ours.

PTB raises one :class:`~telegram.error.NetworkError` for a refused connection,
a connection dropped mid-exchange and any HTTP status it has no class for (5xx,
413, …). :class:`TelegramRequest` keeps the status of the last kind, and
:func:`send_error` reads the rest from the httpx exception PTB chains as
``__cause__``: whether the request had left decides between "retry" and
"the message may have been sent".
"""

from __future__ import annotations

import logging
import re
import warnings
from datetime import timedelta
from typing import Any

import httpx
import orjson
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
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from channels.base import (
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
    SendError,
    SendRefused,
)

_TOKEN_IN_URL = re.compile(r"/(file/)?bot\d+:[A-Za-z0-9_-]+")


class TokenRedactor(logging.Filter):
    """Writes ``/bot<redacted>`` for the token in the Bot API URLs that httpx logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _TOKEN_IN_URL.search(message):
            record.msg = _TOKEN_IN_URL.sub(lambda m: f"/{m.group(1) or ''}bot<redacted>", message)
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


class TelegramRequest(HTTPXRequest):
    """PTB's httpx transport, raising :class:`HTTPStatusError` where PTB would lose the status."""

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        code, payload = await super().do_request(*args, **kwargs)
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
        if isinstance(error.__cause__, httpx.ConnectTimeout | httpx.PoolTimeout):
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
        if isinstance(error.__cause__, httpx.ConnectError):
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
