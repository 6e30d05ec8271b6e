"""Which failed sends are retried, when, and which are parked."""

from __future__ import annotations

import pytest

from channels.base import (
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
    SendError,
    SendRefused,
    WindowClosed,
)
from channels.retry import Disposition, RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=30.0, jitter=0.5)


@pytest.mark.parametrize(
    ("error", "attempts", "rng", "disposition", "delay"),
    [
        (ProviderUnavailable("503"), 1, 0.0, Disposition.RETRY, 1.0),
        (ProviderUnavailable("503"), 2, 0.0, Disposition.RETRY, 2.0),
        (ProviderUnavailable("503"), 4, 0.0, Disposition.RETRY, 8.0),
        # Jitter only shortens the backoff, at most by half.
        (ProviderUnavailable("503"), 3, 0.999, Disposition.RETRY, 2.002),
        (ProviderUnavailable("503"), 5, 0.0, Disposition.PARK, 0.0),
        # retry_after is a floor: never sooner than the provider asked.
        (RateLimited("429", retry_after=7.0), 1, 0.0, Disposition.RETRY, 7.0),
        (RateLimited("429", retry_after=7.0), 1, 0.5, Disposition.RETRY, 8.75),
        (RateLimited("429", retry_after=100.0), 4, 0.0, Disposition.RETRY, 100.0),
        (RateLimited("429"), 2, 0.0, Disposition.RETRY, 2.0),
        (RateLimited("429", retry_after=1.0), 5, 0.0, Disposition.PARK, 0.0),
        # Never repeated: it may have reached the user.
        (OutcomeUnknown("timeout"), 1, 0.0, Disposition.UNKNOWN, 0.0),
        (SendRefused("blocked", code="403"), 1, 0.0, Disposition.PARK, 0.0),
        (WindowClosed("131047", code="131047"), 1, 0.0, Disposition.PARK, 0.0),
        (SendError("unclassified"), 1, 0.0, Disposition.PARK, 0.0),
    ],
)
def test_decide(
    error: SendError, attempts: int, rng: float, disposition: Disposition, delay: float
) -> None:
    decision = POLICY.decide(error, attempts, rng=lambda: rng)
    assert decision.disposition is disposition
    assert decision.delay == pytest.approx(delay)
    assert decision.retry is (disposition is Disposition.RETRY)


def test_backoff_is_capped() -> None:
    assert POLICY.decide(ProviderUnavailable("x"), 4, rng=lambda: 0.0).delay == 8.0
    capped = RetryPolicy(max_attempts=50, max_delay=30.0, jitter=0.0)
    assert capped.decide(ProviderUnavailable("x"), 20).delay == 30.0


def test_a_parked_send_says_why() -> None:
    decision = POLICY.decide(ProviderUnavailable("Graph API 500", code="131000"), 5)
    assert (
        decision.reason
        == "gave up after 5 attempts: ProviderUnavailable: Graph API 500 (code 131000)"
    )
    refused = POLICY.decide(SendRefused("user blocked the bot", code="403"), 1)
    assert refused.reason == "SendRefused: user blocked the bot (code 403)"
