"""Verified API keys remembered for seconds: over every pub/sub backend (in process, Redis)
and both PostgreSQL backends. A revocation on one instance is refused on every other at
once; a broken subscription serves nothing remembered; a wrong key is never remembered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import pytest

from storage.api_key_cache import CachedApiKeys
from storage.api_keys import PostgresApiKeyStore
from storage.base import PubSub, StorageError


@asynccontextmanager
async def listening(*caches: CachedApiKeys) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(cache.listen()) for cache in caches]
    try:
        async with asyncio.timeout(10):
            for cache in caches:
                await cache.wait_subscribed()
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def two_instances(pg_pool: asyncpg.Pool, pubsub: PubSub) -> tuple[CachedApiKeys, CachedApiKeys]:
    # Two gateways: their own caches over one table and one pub/sub.
    return (
        CachedApiKeys(PostgresApiKeyStore(pg_pool), pubsub),
        CachedApiKeys(PostgresApiKeyStore(pg_pool), pubsub),
    )


async def test_a_verified_key_is_served_from_memory_until_its_time_is_up(
    pg_pool: asyncpg.Pool, pubsub: PubSub, unique: Callable[[str], str]
) -> None:
    cache = CachedApiKeys(PostgresApiKeyStore(pg_pool), pubsub, ttl=0.3)
    key, secret = await cache.create(bot_id=unique("bot"), role="app")
    async with listening(cache):
        assert (await cache.verify(secret)) == key
        # Revoked behind the cache's back (straight in the table): still remembered...
        await pg_pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key.id)
        assert (await cache.verify(secret)) == key
        assert (cache.hits, cache.misses) == (1, 1)
        # ...for ttl at most.
        await asyncio.sleep(0.35)
        assert await cache.verify(secret) is None


async def test_a_revocation_on_one_instance_is_refused_on_the_other_at_once(
    pg_pool: asyncpg.Pool, pubsub: PubSub, unique: Callable[[str], str]
) -> None:
    first, second = two_instances(pg_pool, pubsub)
    key, secret = await first.create(bot_id=unique("bot"), role="app")
    other, other_secret = await first.create(bot_id=unique("bot"), role="app")
    async with listening(first, second):
        for cache in (first, second):
            assert await cache.verify(secret) == key and await cache.verify(secret) == key
            assert await cache.verify(other_secret) == other
        assert await first.revoke(key.id)
        for _ in range(500):  # the message's trip through the pub/sub, 5 s at most
            if await second.verify(secret) is None:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the other instance still grants the revoked key")
        assert await first.verify(secret) is None
        # Only the revoked key is forgotten.
        hits = second.hits
        assert await second.verify(other_secret) == other and second.hits == hits + 1


async def test_wrong_and_unknown_keys_are_never_remembered(
    pg_pool: asyncpg.Pool, pubsub: PubSub, unique: Callable[[str], str]
) -> None:
    cache = CachedApiKeys(PostgresApiKeyStore(pg_pool), pubsub)
    _, secret = await cache.create(bot_id=unique("bot"), role="app")
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    async with listening(cache):
        for _ in range(3):
            assert await cache.verify(wrong) is None
        assert (cache.hits, cache.misses) == (0, 3)


async def test_nothing_is_remembered_by_an_instance_that_does_not_hear_revocations(
    pg_pool: asyncpg.Pool, pubsub: PubSub, unique: Callable[[str], str]
) -> None:
    cache = CachedApiKeys(PostgresApiKeyStore(pg_pool), pubsub)
    key, secret = await cache.create(bot_id=unique("bot"), role="app")
    for _ in range(3):  # listen() never started
        assert await cache.verify(secret) == key
    assert cache.hits == 0


class BrokenPubSub:
    """A pub/sub whose subscriptions fail (Redis down), until ``healed``."""

    def __init__(self, inner: PubSub) -> None:
        self.inner = inner
        self.healed = asyncio.Event()

    async def publish(self, channel: str, message: bytes) -> None:
        if not self.healed.is_set():
            raise StorageError("redis is down")
        await self.inner.publish(channel, message)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        if not self.healed.is_set():
            raise StorageError("redis is down")
        return self.inner.subscribe(channel)


async def test_while_the_subscription_is_down_every_check_goes_to_the_table(
    pg_pool: asyncpg.Pool, pubsub: PubSub, unique: Callable[[str], str]
) -> None:
    broken = BrokenPubSub(pubsub)
    cache = CachedApiKeys(PostgresApiKeyStore(pg_pool), broken)
    key, secret = await cache.create(bot_id=unique("bot"), role="app")
    task = asyncio.create_task(cache.listen())
    try:
        await asyncio.sleep(0.05)
        assert not cache.subscribed
        assert await cache.verify(secret) == key and await cache.verify(secret) == key
        assert cache.hits == 0
        # A revocation that cannot be published still takes effect here.
        assert await cache.revoke(key.id)
        assert await cache.verify(secret) is None
        broken.healed.set()
        async with asyncio.timeout(10):
            await cache.wait_subscribed()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("entries", [2])
async def test_the_least_recently_used_grant_goes_first(
    pg_pool: asyncpg.Pool, pubsub: PubSub, unique: Callable[[str], str], entries: int
) -> None:
    cache = CachedApiKeys(PostgresApiKeyStore(pg_pool), pubsub, max_entries=entries)
    made = [await cache.create(bot_id=unique("bot"), role="app") for _ in range(3)]
    async with listening(cache):
        for _, secret in made:
            await cache.verify(secret)
        misses = cache.misses
        await cache.verify(made[2][1])  # kept
        await cache.verify(made[1][1])  # kept
        await cache.verify(made[0][1])  # pushed out by the third
        assert cache.misses == misses + 1
