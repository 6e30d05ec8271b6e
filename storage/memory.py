"""In-process cache, locks and pub/sub: the single-machine defaults.

They hold nothing that must survive a restart (durable state lives in
PostgreSQL), and they are exact only within one process: run several
gateway instances with ``REDIS_URL`` set.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from storage.base import LockTimeout


class MemoryCache:
    """:class:`storage.base.Cache` in a dict; expired entries are dropped as time passes."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[bytes, float | None]] = {}
        # (deadline, key) of every entry set with a ttl; stale pairs are skipped.
        self._deadlines: list[tuple[float, str]] = []

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self._deadlines)
            entry = self._values.get(key)
            if entry is not None and entry[1] == deadline:
                del self._values[key]

    async def get(self, key: str) -> bytes | None:
        now = time.monotonic()
        self._expire(now)
        entry = self._values.get(key)
        if entry is None:
            return None
        value, deadline = entry
        if deadline is not None and deadline <= now:
            del self._values[key]
            return None
        return value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        now = time.monotonic()
        self._expire(now)
        if ttl is None:
            self._values[key] = (bytes(value), None)
            return
        deadline = now + ttl
        self._values[key] = (bytes(value), deadline)
        heapq.heappush(self._deadlines, (deadline, key))

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    def __len__(self) -> int:
        self._expire(time.monotonic())
        return len(self._values)


class _KeyLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # FIFO: waiters are woken in arrival order
        self.users = 0  # holders and waiters; the entry is dropped at zero


class _Hold:
    """One ``async with locks.lock(key)`` block (a class: this runs on every turn)."""

    __slots__ = ("entry", "key", "locks", "wait")

    def __init__(self, locks: dict[str, _KeyLock], key: str, wait: float) -> None:
        self.locks, self.key, self.wait = locks, key, wait
        self.entry: _KeyLock | None = None

    async def __aenter__(self) -> None:
        entry = self.locks.get(self.key)
        if entry is None:
            entry = self.locks[self.key] = _KeyLock()
        entry.users += 1
        self.entry = entry
        try:
            if entry.users == 1:
                await entry.lock.acquire()  # no holder, no waiter: taken at once
            else:
                try:
                    async with asyncio.timeout(self.wait):
                        await entry.lock.acquire()
                except TimeoutError as e:
                    raise LockTimeout(f"lock {self.key!r} not acquired in {self.wait}s") from e
        except BaseException:
            self._leave(entry)
            raise

    async def __aexit__(self, *exc: object) -> None:
        entry = self.entry
        assert entry is not None
        entry.lock.release()
        self._leave(entry)

    def _leave(self, entry: _KeyLock) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self.locks[self.key]


class MemoryLocks:
    """:class:`storage.base.Locks` with one FIFO ``asyncio.Lock`` per key in use.

    ``ttl`` is moot in one process: a crashed holder is a crashed process,
    which takes every lock with it. A live holder keeps the lock until it
    leaves the block, as with the Redis backend (which renews it).
    """

    def __init__(self) -> None:
        self._locks: dict[str, _KeyLock] = {}

    def lock(
        self, key: str, *, ttl: float = 30.0, timeout: float = 30.0
    ) -> AbstractAsyncContextManager[None]:
        return _Hold(self._locks, key, timeout)

    def __len__(self) -> int:
        """Keys currently held or waited for."""
        return len(self._locks)


class MemoryPubSub:
    """:class:`storage.base.PubSub` delivering to per-subscriber queues in this process."""

    def __init__(self, *, max_pending: int = 1000) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[bytes]]] = {}
        self._max_pending = max_pending

    async def publish(self, channel: str, message: bytes) -> None:
        for queue in self._subscribers.get(channel, ()):
            if queue.full():
                # A subscriber that stopped reading loses its oldest message
                # rather than growing without bound or blocking the publisher.
                queue.get_nowait()
            queue.put_nowait(message)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._subscription(channel)

    @asynccontextmanager
    async def _subscription(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(self._max_pending)
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
            yield _drain(queue)
        finally:
            subscribers = self._subscribers[channel]
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[channel]


async def _drain(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while True:
        yield await queue.get()
