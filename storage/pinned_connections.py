"""A few pool connections kept by one store, for the statements it runs many times a second.

Borrowing a connection from an asyncpg pool costs more client CPU than a short
statement itself: every release runs in a task of its own (``asyncio.shield``)
and re-arms the connection's idle timer. A turn runs two or three statements,
so the conversation store takes a few connections from the pool once and hands
them out itself, with a list push and pop. The pool still opens, sets up and
finally closes them; a connection returned after a failure other than a
PostgreSQL error (a cancelled statement, a lost connection) goes back to the
pool, which resets or replaces it, and a fresh one is taken when needed.

The owner must :meth:`close` before the pool closes (``Pool.close`` waits for
every connection to come back).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import asyncpg


class PinnedConnections:
    """Up to ``size`` connections taken from ``pool`` and kept until :meth:`close`."""

    def __init__(self, pool: asyncpg.Pool, *, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._pool = pool
        self._size = size
        self._held = 0  # taken from the pool: idle here or in use
        self._idle: list[Any] = []
        # Callers waiting for a connection; resolved with one, or with None: "take a new one".
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._returning: set[asyncio.Task[None]] = set()
        self._closed = False

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Run ``query`` on one of the connections; its rows."""
        conn = await self._acquire()
        try:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        except asyncpg.PostgresError:
            self._release(conn)  # the server refused the statement; the connection is fine
            raise
        except BaseException:
            self._release(conn, broken=True)
            raise
        self._release(conn)
        return rows

    async def close(self) -> None:
        """Give every connection back to the pool; later calls fail."""
        self._closed = True
        idle, self._idle = self._idle, []
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the store is closed"))
        self._waiters.clear()
        for conn in idle:
            self._held -= 1
            await self._pool.release(conn)
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)

    async def _acquire(self) -> Any:
        if self._closed:
            raise asyncpg.InterfaceError("the store is closed")
        if self._idle:
            return self._idle.pop()
        if self._held >= self._size:
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # Handed a connection (or a slot) just as we were cancelled: pass it on.
                    given = waiter.result()
                    if given is None:
                        self._held -= 1
                        self._wake()
                    else:
                        self._release(given)
                raise
            if conn is not None:
                return conn
        else:
            self._held += 1
        try:
            return await self._pool.acquire()
        except BaseException:
            self._held -= 1
            self._wake()
            raise

    def _release(self, conn: Any, *, broken: bool = False) -> None:
        if broken or self._closed or conn.is_closed():
            self._held -= 1
            task = asyncio.get_running_loop().create_task(self._pool.release(conn))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)
            self._wake()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _wake(self) -> None:
        """A slot freed: let the first waiter take a new connection from the pool."""
        while self._waiters and self._held < self._size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)
