"""When to send again after a failed send.

A rate limit or a provider outage is retried with exponential backoff and
jitter, never sooner than the provider's ``retry_after``, up to a number of
attempts; then the send is parked with its reason for the operator. A refused
send is parked at once. A send whose outcome is unknown (the request left and
no answer came) is never repeated automatically: it may have reached the user.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from channels.base import OutcomeUnknown, SendError


class Disposition(enum.StrEnum):
    """What to do with a send that failed."""

    RETRY = "retry"  # send again after ``delay``
    PARK = "park"  # give up; the operator sees ``reason``
    UNKNOWN = "unknown"  # may have been sent: record as unknown, never resend


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """The verdict on one failed attempt."""

    disposition: Disposition
    delay: float = 0.0
    reason: str = ""

    @property
    def retry(self) -> bool:
        return self.disposition is Disposition.RETRY


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for retriable send errors.

    The n-th retry waits ``base_delay * 2**(n-1)``, capped at ``max_delay``,
    less up to ``jitter`` of it drawn at random (so senders that failed together
    do not come back together); a ``retry_after`` is a floor, raised by up to
    ``jitter``. After ``max_attempts`` attempts in all the send is parked.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 300.0
    jitter: float = 0.25

    def decide(
        self, error: SendError, attempts: int, *, rng: Callable[[], float] = random.random
    ) -> RetryDecision:
        """What to do after ``attempts`` attempts (1 after the first), the last of which
        raised ``error``. ``rng`` returns a float in [0, 1)."""
        code = f" (code {error.code})" if error.code else ""
        reason = f"{type(error).__name__}: {error}{code}"
        if isinstance(error, OutcomeUnknown):
            return RetryDecision(Disposition.UNKNOWN, reason=reason)
        if not error.retriable:
            return RetryDecision(Disposition.PARK, reason=reason)
        if attempts >= self.max_attempts:
            return RetryDecision(
                Disposition.PARK, reason=f"gave up after {attempts} attempts: {reason}"
            )
        if error.retry_after is not None:
            delay = error.retry_after * (1 + self.jitter * rng())
        else:
            backoff = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
            delay = backoff * (1 - self.jitter * rng())
        return RetryDecision(Disposition.RETRY, delay=delay, reason=reason)
