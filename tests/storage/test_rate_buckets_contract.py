"""Token buckets: one suite, every backend (in process, Redis, Redis behind the fallback);
then what the fallback does when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from storage.base import Rate, RateBuckets
from storage.rate_buckets import FallbackRateBuckets, MemoryRateBuckets, RedisRateBuckets
from tests.tcp_proxy import TcpProxy

BURST_5 = Rate(per_second=10.0, burst=5)


async def takes(buckets: RateBuckets, key: str, rate: Rate, n: int) -> list[bool]:
    return [(await buckets.take(key, rate)).allowed for _ in range(n)]


async def test_a_burst_passes_then_the_next_waits_for_a_token(rate_buckets: RateBuckets) -> None:
    assert await takes(rate_buckets, "a", BURST_5, 5) == [True] * 5
    refused = await rate_buckets.take("a", BURST_5)
    assert not refused.allowed
    # One token comes back every 0.1 s at 10/s: the refusal says when.
    assert 0.0 < refused.retry_after <= 0.1 + 1e-3


async def test_remaining_counts_down(rate_buckets: RateBuckets) -> None:
    remaining = [(await rate_buckets.take("r", BURST_5)).remaining for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]


async def test_a_token_comes_back_after_retry_after(rate_buckets: RateBuckets) -> None:
    rate = Rate(per_second=20.0, burst=2)
    assert await takes(rate_buckets, "w", rate, 2) == [True, True]
    refused = await rate_buckets.take("w", rate)
    assert not refused.allowed
    await asyncio.sleep(refused.retry_after + 0.01)
    assert (await rate_buckets.take("w", rate)).allowed
    assert not (await rate_buckets.take("w", rate)).allowed  # one token, not a full bucket


async def test_a_refused_take_takes_nothing(rate_buckets: RateBuckets) -> None:
    rate = Rate(per_second=10.0, burst=1)
    assert (await rate_buckets.take("n", rate)).allowed
    for _ in range(20):  # hammering while empty does not push the next token further away
        assert not (await rate_buckets.take("n", rate)).allowed
    await asyncio.sleep(0.11)
    assert (await rate_buckets.take("n", rate)).allowed


async def test_keys_are_separate_buckets(rate_buckets: RateBuckets) -> None:
    assert await takes(rate_buckets, "k1", BURST_5, 6) == [True] * 5 + [False]
    assert await takes(rate_buckets, "k2", BURST_5, 5) == [True] * 5


async def test_a_cost_takes_that_many_tokens(rate_buckets: RateBuckets) -> None:
    assert (await rate_buckets.take("c", BURST_5, cost=4)).allowed
    assert not (await rate_buckets.take("c", BURST_5, cost=2)).allowed
    assert (await rate_buckets.take("c", BURST_5, cost=1)).allowed


async def test_the_bucket_refills_at_its_rate(rate_buckets: RateBuckets) -> None:
    """Over 0.5 s at 20/s with a burst of 2, about 2 + 10 requests pass, not more."""
    rate = Rate(per_second=20.0, burst=2)
    passed = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.5
    while loop.time() < end:
        passed += (await rate_buckets.take("flow", rate)).allowed
        await asyncio.sleep(0.005)
    assert 10 <= passed <= 13


async def test_two_clients_of_one_redis_share_a_bucket(redis_url: str, redis_prefix: str) -> None:
    """Two instances (two clients) on one Redis take from the same bucket."""
    one, two = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        a = RedisRateBuckets(one, prefix=redis_prefix)
        b = RedisRateBuckets(two, prefix=redis_prefix)
        results = [(await (a if i % 2 else b).take("shared", BURST_5)).allowed for i in range(6)]
        assert results == [True] * 5 + [False]
    finally:
        await one.aclose()
        await two.aclose()


def test_memory_keeps_no_full_bucket() -> None:
    now = [0.0]
    buckets = MemoryRateBuckets(clock=lambda: now[0])
    rate = Rate(per_second=100.0, burst=10)
    for i in range(3000):
        buckets.take_now(f"ip-{i}", rate)
    now[0] += 1.0  # every bucket is full again
    for i in range(3000, 5048):
        buckets.take_now(f"ip-{i}", rate)
    assert len(buckets) < 3000  # the full ones were swept as calls came


def test_memory_is_bounded() -> None:
    buckets = MemoryRateBuckets(max_keys=100, clock=lambda: 0.0)
    for i in range(1000):
        buckets.take_now(f"ip-{i}", Rate(per_second=1.0, burst=5))
    assert len(buckets) <= 100


# -- Redis unreachable ----------------------------------------------------------------------


def _dead_redis() -> aioredis.Redis:
    """A client of a port nothing listens on: every command fails to connect."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return aioredis.Redis.from_url(f"redis://127.0.0.1:{port}", socket_connect_timeout=0.2)


async def test_unreachable_redis_is_a_storage_error() -> None:
    from storage.base import StorageError

    client = _dead_redis()
    try:
        with pytest.raises(StorageError):
            await RedisRateBuckets(client, prefix="x:").take("k", BURST_5)
    finally:
        await client.aclose()


async def test_the_fallback_keeps_limiting_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Redis down: neither open (every request passing) nor failing — each instance limits on
    its own, and a warning is logged once, not per request."""
    client = _dead_redis()
    buckets = FallbackRateBuckets(RedisRateBuckets(client, prefix="x:"), MemoryRateBuckets())
    try:
        with caplog.at_level(logging.WARNING, logger="storage.rate_buckets"):
            results = await takes(buckets, "k", BURST_5, 8)
        assert results == [True] * 5 + [False] * 3
        assert buckets.degraded and buckets.fallback_decisions == 8
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await client.aclose()


class _Hanging:
    """A primary that never answers (a Redis that accepts and then stalls)."""

    async def take(self, key: str, rate: Rate, *, cost: int = 1) -> object:
        await asyncio.sleep(3600)
        raise AssertionError


async def test_a_stalled_redis_costs_one_timeout_then_none() -> None:
    buckets = FallbackRateBuckets(_Hanging(), MemoryRateBuckets(), timeout=0.05)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await buckets.take("k", BURST_5)).allowed
    first = loop.time() - start
    start = loop.time()
    for _ in range(20):
        await buckets.take("k2", BURST_5)
    rest = loop.time() - start
    assert 0.04 <= first < 0.5
    assert rest < 0.04  # the primary is left alone for a while: no timeout per request


async def test_the_shared_buckets_are_used_again_once_redis_answers(
    redis_url: str, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """Redis cut, then back: the fallback decides meanwhile; then the shared bucket again."""
    target = redis_url.removeprefix("redis://").split("/")[0]
    host, _, port = target.partition(":")
    proxy = TcpProxy(host, int(port or 6379))
    await proxy.start()
    client = aioredis.Redis.from_url(proxy.url, socket_connect_timeout=0.2, socket_timeout=0.2)
    now = [0.0]
    buckets = FallbackRateBuckets(
        RedisRateBuckets(client, prefix=redis_prefix), MemoryRateBuckets(), clock=lambda: now[0]
    )
    try:
        assert (await buckets.take("k", BURST_5)).allowed
        assert not buckets.degraded
        await proxy.cut()
        assert (await buckets.take("k", BURST_5)).allowed
        assert buckets.degraded
        await proxy.restore()
        now[0] += 10.0  # past the retry interval
        await buckets.take("k", BURST_5)
        assert not buckets.degraded
        assert await redis_client.exists(redis_prefix + "rate:k")
    finally:
        await client.aclose()
        await proxy.close()
