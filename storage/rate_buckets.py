"""Token buckets for rate limits: in process, in Redis, and Redis with an in-process fallback.

Both backends run the same algorithm, GCRA (the generic cell rate algorithm): a bucket is
one number, the time at which it will be full again (its "theoretical arrival time"). A
request of cost ``n`` moves it ``n / rate`` seconds on, and is refused when that would put
it more than ``burst / rate`` seconds ahead of now; the refusal knows exactly when the next
request fits, which becomes the answer's ``Retry-After``. One key, one round trip, and
nothing stored for a bucket that is full.

In Redis the step is a Lua script run against Redis's own clock, so instances whose clocks
differ still share one bucket. :class:`FallbackRateBuckets` keeps the limits in force when
Redis cannot be reached: each instance then limits on its own (at worst N instances let N
times the rate through), with a warning logged, rather than opening the gate or failing
the request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from storage.base import BucketDecision, Rate, RateBuckets, StorageError

log = logging.getLogger(__name__)


class MemoryRateBuckets:
    """:class:`storage.base.RateBuckets` in a dict of one float per bucket not yet full.

    Exact within one process. Full buckets are swept as calls come (amortized O(1)); past
    ``max_keys`` the oldest entries go, which at worst gives their keys a full bucket again.
    """

    def __init__(
        self, *, max_keys: int = 200_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys
        self._clock = clock
        self._calls = 0

    def __len__(self) -> int:
        return len(self._tat)

    async def take(self, key: str, rate: Rate, *, cost: int = 1) -> BucketDecision:
        return self.take_now(key, rate, cost=cost)

    def take_now(self, key: str, rate: Rate, *, cost: int = 1) -> BucketDecision:
        """:meth:`take` without awaiting (nothing here waits)."""
        now = self._clock()
        interval = 1.0 / rate.per_second
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + cost * interval
        allow_at = new_tat - rate.burst * interval
        if now < allow_at:
            return BucketDecision(False, retry_after=allow_at - now)
        self._tat.pop(key, None)  # re-inserted last: the dict stays in order of last use
        self._tat[key] = new_tat
        self._calls += 1
        if self._calls % 1024 == 0 or len(self._tat) > self._max_keys:
            self._sweep(now)
        return BucketDecision(True, remaining=math.floor((now - allow_at) / interval + 1e-9))

    def _sweep(self, now: float) -> None:
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        while len(self._tat) > self._max_keys:
            del self._tat[next(iter(self._tat))]


# KEYS[1] the bucket; ARGV: milliseconds per token, burst, cost. Redis's clock, so every
# instance agrees on "now"; a float reply would be truncated, so numbers go back as strings.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, tostring(allow_at - now), 0}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now))
return {1, '0', math.floor((now - allow_at) / interval + 1e-9)}
"""


class RedisRateBuckets:
    """:class:`storage.base.RateBuckets` in Redis: one string per bucket, expiring when full."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._prefix = prefix + "rate:"
        self._script = client.register_script(_GCRA)

    async def take(self, key: str, rate: Rate, *, cost: int = 1) -> BucketDecision:
        interval_ms = 1000.0 / rate.per_second
        try:
            allowed, retry_ms, remaining = await self._script(
                keys=[self._prefix + key], args=[repr(interval_ms), rate.burst, cost]
            )
        except RedisError as e:
            raise StorageError(f"rate buckets: {type(e).__name__}: {e}") from e
        if int(allowed):
            return BucketDecision(True, remaining=int(remaining))
        return BucketDecision(False, retry_after=float(retry_ms) / 1000.0)


class FallbackRateBuckets:
    """``primary`` (Redis), and ``fallback`` (in process) while the primary cannot answer.

    A call the primary fails or does not answer within ``timeout`` is decided by the
    fallback; the primary is then left alone for ``retry_interval`` seconds, so an outage
    does not add a timeout to every request. A warning is logged at most every
    ``warn_every`` seconds while it lasts, and once when the primary answers again.
    """

    def __init__(
        self,
        primary: RateBuckets,
        fallback: MemoryRateBuckets,
        *,
        timeout: float = 0.25,
        retry_interval: float = 5.0,
        warn_every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._warn_every = warn_every
        self._clock = clock
        self._down_until = 0.0
        self._warned_at: float | None = None
        self.fallback_decisions = 0

    @property
    def degraded(self) -> bool:
        """Whether the last calls were decided in process (the primary was unreachable)."""
        return self._warned_at is not None

    async def take(self, key: str, rate: Rate, *, cost: int = 1) -> BucketDecision:
        now = self._clock()
        if now >= self._down_until:
            try:
                async with asyncio.timeout(self._timeout):
                    decision = await self._primary.take(key, rate, cost=cost)
            except (StorageError, TimeoutError) as e:
                self._down_until = now + self._retry_interval
                self._warn(now, e)
            else:
                if self._warned_at is not None:
                    self._warned_at = None
                    log.warning("rate limits: the shared store answers again; limits shared")
                return decision
        self.fallback_decisions += 1
        return self._fallback.take_now(key, rate, cost=cost)

    def _warn(self, now: float, error: BaseException) -> None:
        if self._warned_at is None or now - self._warned_at >= self._warn_every:
            self._warned_at = now
            log.warning(
                "rate limits: the shared store is unreachable (%s); each instance limits on"
                " its own until it answers",
                str(error) or type(error).__name__,
            )
