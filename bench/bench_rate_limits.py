"""Cost of one rate-limit check: our GCRA buckets against the ``limits`` library and aiolimiter.

    .venv/bin/python -m bench.bench_rate_limits [--checks 20000] [--keys 1000] [--rounds 5]

Each round makes ``--checks`` sequential checks spread over ``--keys`` keys (a mix of allowed
and refused), in process and against Redis (``BENCH_REDIS_URL``, default
redis://127.0.0.1:6379/15), and prints the median µs per check of each, and the keys each
left in Redis. Only this bench's keys are written, and deleted at the end.

``limits`` (moving window and sliding window counter) needs its own Redis client from a URL
and has no token bucket: a burst with a sustained rate is two limits, checked one after the
other; its Retry-After is ``get_window_stats``, one more call. aiolimiter is in process only
and waits rather than answers, so it is measured with ``has_capacity`` then ``acquire`` on a
dict of limiters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from storage.base import Rate
from storage.rate_buckets import MemoryRateBuckets, RedisRateBuckets

Check = Callable[[str], Awaitable[bool]]

RATE = Rate(per_second=10.0, burst=20)  # "20 at once, then 10/s"


async def _forget(client: aioredis.Redis) -> None:
    """Delete this bench's keys (and only them: the Redis may be shared)."""
    for pattern in ("bench:*", "benchlim*"):
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)


async def _time(check: Check, checks: int, keys: int) -> float:
    names = [f"k{i}" for i in range(keys)]
    start = time.perf_counter()
    for i in range(checks):
        await check(names[i % keys])
    return (time.perf_counter() - start) / checks * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

    from aiolimiter import AsyncLimiter
    from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
    from limits.aio.storage import MemoryStorage, RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

    client = aioredis.Redis.from_url(url)
    await _forget(client)
    memory = MemoryRateBuckets()
    ours_redis = RedisRateBuckets(client, prefix="bench:")
    burst = RateLimitItemPerSecond(RATE.burst, 2)  # 20 per 2 s ...
    sustained = RateLimitItemPerMinute(600)  # ... and 600 per minute: two limits
    lim_memory = MemoryStorage()
    lim_redis = RedisStorage("async+" + url, implementation="redispy", key_prefix="benchlim")
    moving_mem = MovingWindowRateLimiter(lim_memory)
    moving_redis = MovingWindowRateLimiter(lim_redis)
    sliding_mem = SlidingWindowCounterRateLimiter(MemoryStorage())
    sliding_redis = SlidingWindowCounterRateLimiter(lim_redis)
    aio: dict[str, AsyncLimiter] = {}

    async def ours_mem(key: str) -> bool:
        return (await memory.take(key, RATE)).allowed

    async def ours_red(key: str) -> bool:
        return (await ours_redis.take(key, RATE)).allowed

    def two_limits(limiter: MovingWindowRateLimiter | SlidingWindowCounterRateLimiter) -> Check:
        async def check(key: str) -> bool:
            if not await limiter.hit(burst, key):
                await limiter.get_window_stats(burst, key)  # for Retry-After
                return False
            if not await limiter.hit(sustained, key):
                await limiter.get_window_stats(sustained, key)
                return False
            return True

        return check

    async def aiolimiter_check(key: str) -> bool:
        limiter = aio.get(key)
        if limiter is None:
            limiter = aio[key] = AsyncLimiter(RATE.burst, RATE.burst / RATE.per_second)
        if not limiter.has_capacity():
            return False
        await limiter.acquire()
        return True

    cases: dict[str, Check] = {
        "ours, in process (GCRA)": ours_mem,
        "aiolimiter, in process": aiolimiter_check,
        "limits moving window, in process": two_limits(moving_mem),
        "limits sliding counter, in process": two_limits(sliding_mem),
        "ours, Redis (GCRA, one Lua call)": ours_red,
        "limits moving window, Redis": two_limits(moving_redis),
        "limits sliding counter, Redis": two_limits(sliding_redis),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, check in cases.items():
            checks = args.checks if "Redis" not in name else max(args.checks // 4, 1000)
            results[name].append(await _time(check, checks, args.keys))
    base = statistics.median(results["ours, in process (GCRA)"])
    print(f"median µs per check over {args.rounds} rounds ({args.keys} keys, rate {RATE}):")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:38s} {median:8.2f} µs   ({median / base:6.1f}x ours in process)")
    ours_keys = len(await client.keys("bench:*"))
    their_keys = len(await client.keys("benchlim*"))
    print(f"Redis keys after the run: ours {ours_keys}, limits' {their_keys}")
    await _forget(client)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
