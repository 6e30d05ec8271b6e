"""Locks contract: one suite, every backend (in-process, Redis)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from storage.base import Locks, LockTimeout
from storage.memory import MemoryLocks
from storage.redis import RedisLocks


async def test_one_holder_at_a_time_under_concurrency(locks: Locks) -> None:
    counter = 0
    holders = 0
    most_holders = 0

    async def increment() -> None:
        nonlocal counter, holders, most_holders
        async with locks.lock("bot:conv-1", timeout=10):
            holders += 1
            most_holders = max(most_holders, holders)
            seen = counter
            await asyncio.sleep(0.002)  # a lost update would show without the lock
            counter = seen + 1
            holders -= 1

    await asyncio.gather(*(increment() for _ in range(25)))

    assert counter == 25
    assert most_holders == 1


async def test_waiting_longer_than_timeout_raises_lock_timeout(locks: Locks) -> None:
    async with locks.lock("busy"):
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            async with locks.lock("busy", timeout=0.2):
                pytest.fail("acquired a held lock")
        waited = time.monotonic() - started
    assert 0.15 <= waited < 2

    async with locks.lock("busy", timeout=1):  # released by the holder: free again
        pass


async def test_different_keys_do_not_block_each_other(locks: Locks) -> None:
    async with locks.lock("conv-a"), locks.lock("conv-b", timeout=0.5):
        pass


async def test_an_exception_in_the_block_releases_the_lock(locks: Locks) -> None:
    with pytest.raises(RuntimeError):
        async with locks.lock("k"):
            raise RuntimeError("turn failed")
    async with locks.lock("k", timeout=0.5):
        pass


async def test_waiters_are_served_in_arrival_order(locks: Locks) -> None:
    order: list[int] = []

    async def wait_turn(n: int) -> None:
        async with locks.lock("fifo", timeout=10):
            order.append(n)
            await asyncio.sleep(0.005)

    async with locks.lock("fifo"):
        waiters = []
        for n in range(6):
            waiters.append(asyncio.create_task(wait_turn(n)))
            await asyncio.sleep(0.01)  # let each one queue before the next
    await asyncio.gather(*waiters)

    assert order == list(range(6))


async def test_a_live_holder_keeps_the_lock_past_its_ttl(locks: Locks) -> None:
    async with locks.lock("slow", ttl=0.3):
        await asyncio.sleep(0.7)
        with pytest.raises(LockTimeout):
            async with locks.lock("slow", ttl=0.3, timeout=0.2):
                pytest.fail("acquired a held lock")


async def test_timed_out_and_released_locks_leave_nothing_behind() -> None:
    locks = MemoryLocks()
    async with locks.lock("a"):
        with pytest.raises(LockTimeout):
            async with locks.lock("a", timeout=0.05):
                pass
        assert len(locks) == 1
    assert len(locks) == 0


async def test_redis_lock_key_is_gone_after_release_and_expires_if_holder_dies(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    locks = RedisLocks(redis_client, prefix=redis_prefix)
    key = f"{redis_prefix}lock:conv"
    async with locks.lock("conv", ttl=5):
        assert 0 < await redis_client.pttl(key) <= 5000
    assert await redis_client.exists(key) == 0

    # A holder on another instance crashed: its key lives on until its ttl ends.
    await redis_client.set(key, b"token-of-a-dead-instance", px=300)
    started = time.monotonic()
    async with locks.lock("conv", timeout=5):
        assert time.monotonic() - started >= 0.2


async def test_redis_lock_never_releases_a_lock_it_lost(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    locks = RedisLocks(redis_client, prefix=redis_prefix)
    key = f"{redis_prefix}lock:conv"
    async with locks.lock("conv"):
        await redis_client.set(key, b"someone-else")  # ours expired, another took it
    assert await redis_client.get(key) == b"someone-else"
