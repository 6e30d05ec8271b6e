"""Cache, locks and pub/sub shared by every gateway instance through Redis.

Keys are namespaced by a prefix (default ``botserver:``) so that several
deployments, or test runs, can share one Redis.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from storage.base import LockTimeout, StorageError
from storage.memory import MemoryLocks

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "botserver:"

# Delete / extend the lock only if it still holds our token: a holder whose
# lock expired must not release or renew the lock of whoever took it next.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class RedisStoreError(StorageError):
    """Redis refused a command or could not be reached."""


class _Translate:
    """The one place where redis-py errors become :class:`RedisStoreError`."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, RedisError):
            raise RedisStoreError(f"{type(exc).__name__}: {exc}") from exc


_translate = _Translate()


def connect(url: str) -> aioredis.Redis:
    """A client for ``url`` returning bytes (no response decoding)."""
    client: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=False)
    return client


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisCache:
    """:class:`storage.base.Cache` as Redis strings; ``ttl`` becomes ``PX``."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix + "cache:"

    async def get(self, key: str) -> bytes | None:
        with _translate:
            value = await self._client.get(self._prefix + key)
        # The client is created with decode_responses=False: values are bytes.
        return cast(bytes | None, value)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        with _translate:
            await self._client.set(self._prefix + key, value, px=None if ttl is None else _ms(ttl))

    async def delete(self, key: str) -> None:
        with _translate:
            await self._client.delete(self._prefix + key)


class RedisLocks:
    """:class:`storage.base.Locks` as ``SET key token NX PX ttl``, across instances.

    Waiters of one process queue in FIFO order on a local lock and only the
    head of the queue polls Redis (with jittered exponential backoff), which
    keeps the lock fair within a process and Redis traffic to one poller per
    key and process. The holder renews the expiry every ``ttl / 3`` so a slow
    but live holder keeps the lock; a crashed one loses it after ``ttl``.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        poll_min: float = 0.002,
        poll_max: float = 0.05,
    ) -> None:
        self._client = client
        self._prefix = prefix + "lock:"
        self._poll_min = poll_min
        self._poll_max = poll_max
        self._local = MemoryLocks()
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    def lock(
        self, key: str, *, ttl: float = 30.0, timeout: float = 30.0
    ) -> AbstractAsyncContextManager[None]:
        return self._hold(key, ttl, timeout)

    @asynccontextmanager
    async def _hold(self, key: str, ttl: float, wait: float) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        async with self._local.lock(key, timeout=wait):
            name = self._prefix + key
            token = secrets.token_hex(16)
            await self._acquire(name, token, ttl, deadline)
            renewal = _Renewal(self._extend, name, token, ttl)
            try:
                yield
            finally:
                renewal.stop()
                with _translate:
                    await self._release(keys=[name], args=[token])

    async def _acquire(self, name: str, token: str, ttl: float, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        delay = self._poll_min
        while True:
            with _translate:
                if await self._client.set(name, token, nx=True, px=_ms(ttl)):
                    return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockTimeout(f"lock {name!r} not acquired in time")
            await asyncio.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, self._poll_max)


class _Renewal:
    """Pushes a held lock's expiry forward every ``ttl / 3`` until stopped."""

    def __init__(self, extend: Any, name: str, token: str, ttl: float) -> None:
        self._extend = extend
        self._name = name
        self._token = token
        self._ttl = ttl
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        # A timer, not a task per lock: most holds end long before ttl / 3.
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(ttl / 3, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._task = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        try:
            renewed = await self._extend(keys=[self._name], args=[self._token, _ms(self._ttl)])
        except RedisError as e:
            log.warning("could not renew lock %s: %s", self._name, e)
            renewed = 1  # transient: try again at the next period
        if not renewed:
            log.error("lock %s expired while held; mutual exclusion was lost", self._name)
            return
        self._task = None
        self._timer = self._loop.call_later(self._ttl / 3, self._fire)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


class RedisPubSub:
    """:class:`storage.base.PubSub` on Redis channels; one connection per subscription."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix + "pubsub:"

    async def publish(self, channel: str, message: bytes) -> None:
        with _translate:
            await self._client.publish(self._prefix + channel, message)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._subscription(self._prefix + channel)

    @asynccontextmanager
    async def _subscription(self, name: str) -> AsyncIterator[AsyncIterator[bytes]]:
        pubsub = self._client.pubsub()
        try:
            with _translate:
                await pubsub.subscribe(name)
                # Wait for the server's confirmation: from then on, nothing
                # published to the channel can be missed.
                while True:
                    reply = await pubsub.get_message(timeout=10.0)
                    if reply is None:
                        raise RedisStoreError(f"no confirmation subscribing to {name!r}")
                    if reply["type"] == "subscribe":
                        break
            yield _messages(pubsub)
        finally:
            with _translate:
                # Any: redis-py types aclose() in some releases, not in others.
                await cast(Any, pubsub).aclose()


async def _messages(pubsub: Any) -> AsyncIterator[bytes]:
    while True:
        with _translate:
            reply = await pubsub.get_message(timeout=None)
        if reply is not None and reply["type"] == "message":
            yield reply["data"]
