"""The errors of a model call, one family whatever the provider.

Every provider maps its SDK's failures here in one place (``status_error``), keeping the
provider's name and HTTP status for the log. The fallback chain decides by the class:
:class:`RateLimited` and :class:`ProviderUnavailable` are worth another try, a
:class:`RequestRefused` is not, :class:`DeadlineExceeded` ends the request.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping


class LLMError(Exception):
    """Root of the model-call errors. ``provider`` and ``status`` are for the log."""

    def __init__(self, message: str, *, provider: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.message}{status}"


class ProviderNotConfigured(LLMError):
    """No usable provider: no key, no model, a ``${VAR}`` that is not set, an unknown kind.

    Raised before any request leaves, so nothing is ever sent without credentials.
    """


class EmbeddingsUnsupported(ProviderNotConfigured):
    """The provider has no embeddings endpoint (Anthropic), or none was configured."""


class ProviderError(LLMError):
    """A provider call failed; the subclass says whether another try makes sense."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after


class RateLimited(ProviderError):
    """429: too many requests or tokens; ``retry_after`` is the provider's wait, if it gave one."""

    retryable = True


class ProviderUnavailable(ProviderError):
    """5xx, a timeout, a connection error, or a malformed or cut stream."""

    retryable = True


class RequestRefused(ProviderError):
    """A 4xx other than 429 (bad key, unknown model, a request the provider rejects).

    Sending the same request again gives the same answer, so it is never retried.
    """


class DeadlineExceeded(LLMError):
    """The request's overall deadline passed before any provider answered."""


def status_error(
    status: int, message: str, *, provider: str, retry_after: float | None = None
) -> ProviderError:
    """The error for an HTTP status a provider answered with."""
    if status == 429:
        return RateLimited(message, provider=provider, status=status, retry_after=retry_after)
    if status >= 500 or status == 408:
        return ProviderUnavailable(
            message, provider=provider, status=status, retry_after=retry_after
        )
    return RequestRefused(message, provider=provider, status=status)


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """The wait a provider asked: ``retry-after-ms``, else ``Retry-After`` (seconds or a date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)
