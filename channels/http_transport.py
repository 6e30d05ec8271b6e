"""Timeouts and transport failures of the providers' HTTP APIs reached through aiohttp.

Both the WhatsApp Cloud API adapter and the Twilio SDK's async client send
through aiohttp, and a failure below HTTP means the same thing for both: if
the request never left (refused, unreachable, no connection in time) sending
again is safe; once it left, silence means the message may have gone out.
"""

from __future__ import annotations

import aiohttp

from channels.base import OutcomeUnknown, ProviderUnavailable, SendError

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0


def client_timeout(
    *, connect: float = DEFAULT_CONNECT_TIMEOUT, read: float = DEFAULT_READ_TIMEOUT
) -> aiohttp.ClientTimeout:
    """Separate limits for getting a connection and for the answer.

    A connect timeout and a read timeout raise different aiohttp errors, which
    is what lets :func:`transport_error` tell "not sent" from "maybe sent". The
    total caps a provider trickling its answer byte by byte.
    """
    return aiohttp.ClientTimeout(total=connect + 2 * read, connect=connect, sock_read=read)


def transport_error(provider: str, error: aiohttp.ClientError | TimeoutError) -> SendError:
    """The :class:`SendError` for an aiohttp failure that left no HTTP answer.

    The order of the checks matters: the connect errors are subclasses of the
    broader connection errors that may also happen after the request was written.
    """
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        # Covers waiting for a pool slot and the TCP/TLS handshake: nothing was written.
        return ProviderUnavailable(f"{provider}: no connection in time: {error}")
    if isinstance(error, aiohttp.ClientConnectorError):
        # Refused, unreachable, DNS failure: the request never left.
        return ProviderUnavailable(f"{provider}: cannot connect: {error}")
    if isinstance(error, TimeoutError):
        # A read timeout (aiohttp's SocketTimeoutError) or the total cap.
        return OutcomeUnknown(f"{provider}: no answer in time; the message may have been sent")
    # A connection dropped mid-exchange, a truncated answer: it may have been sent.
    return OutcomeUnknown(f"{provider}: the exchange broke off: {error!r}")
