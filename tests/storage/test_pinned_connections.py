"""Connections kept by a store (storage/pinned_connections.py), on every PostgreSQL backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from storage.pinned_connections import PinnedConnections
from storage.postgres import create_pool


@pytest.fixture
async def pool(pg_dsn: str, pg_schema: Callable[[str], str]) -> AsyncIterator[asyncpg.Pool]:
    """A pool of its own: these tests take, break and give back its connections."""
    opened = await create_pool(pg_dsn, schema=pg_schema("pinned"), min_size=1, max_size=4)
    yield opened
    async with asyncio.timeout(10):
        await opened.close()  # hangs if a pinned connection was never given back


async def _pid(pinned: PinnedConnections, sleep: float = 0.0) -> int:
    rows = await pinned.fetch("SELECT pg_backend_pid(), pg_sleep($1)", sleep)
    return int(rows[0][0])


async def test_concurrent_statements_share_at_most_size_connections(pool: asyncpg.Pool) -> None:
    pinned = PinnedConnections(pool, size=2)
    pids = await asyncio.gather(*(_pid(pinned, 0.02) for _ in range(12)))
    assert len(set(pids)) == 2
    assert set(await asyncio.gather(*(_pid(pinned) for _ in range(6)))) <= set(pids)
    await pinned.close()


async def test_a_refused_statement_keeps_its_connection(pool: asyncpg.Pool) -> None:
    pinned = PinnedConnections(pool, size=1)
    before = await _pid(pinned)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await pinned.fetch("SELECT 1 / 0")
    assert await _pid(pinned) == before
    await pinned.close()


async def test_a_connection_the_server_dropped_is_replaced(pool: asyncpg.Pool) -> None:
    pinned = PinnedConnections(pool, size=1)
    doomed = await _pid(pinned)
    async with pool.acquire() as admin:
        await admin.execute("SELECT pg_terminate_backend($1)", doomed)
    await asyncio.sleep(0.2)

    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await _pid(pinned)  # the dropped one is found dead on use, and given back
    replacement = await _pid(pinned)
    assert replacement != doomed
    await pinned.close()


async def test_a_cancelled_wait_leaks_nothing(pool: asyncpg.Pool) -> None:
    pinned = PinnedConnections(pool, size=1)
    busy = asyncio.create_task(_pid(pinned, 0.2))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(_pid(pinned))
    await asyncio.sleep(0.02)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    pid = await busy
    assert await asyncio.wait_for(_pid(pinned), 5) == pid  # the one connection is free again
    await pinned.close()


async def test_a_statement_cancelled_mid_flight_gives_its_connection_back(
    pool: asyncpg.Pool,
) -> None:
    pinned = PinnedConnections(pool, size=1)
    running = asyncio.create_task(_pid(pinned, 5))
    await asyncio.sleep(0.1)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await asyncio.wait_for(_pid(pinned), 5) > 0
    await pinned.close()


async def test_closed_connections_are_back_in_the_pool(pool: asyncpg.Pool) -> None:
    pinned = PinnedConnections(pool, size=3)
    await asyncio.gather(*(_pid(pinned, 0.02) for _ in range(6)))
    await pinned.close()
    with pytest.raises(asyncpg.InterfaceError):
        await pinned.fetch("SELECT 1")
    # All four of the pool's connections can be taken again (the fixture's close checks too).
    held = [await pool.acquire(timeout=5) for _ in range(4)]
    for conn in held:
        await pool.release(conn)
