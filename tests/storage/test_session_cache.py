"""The in-process session cache over the PostgreSQL store (embedded and server).

The contract suite runs over the cache too; these tests show what only a cache
does: reads answered from memory, copies that a turn may change freely, the
bound on memory, and that a failed save never leaves the cache ahead of the
database. "Behind the cache's back" below means a direct UPDATE in PostgreSQL,
which only an uncached read can see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from storage.base import HistoryEntry, StorageError
from storage.postgres import PostgresConversationStore
from storage.session_cache import CachedConversationStore


@pytest.fixture
async def database(pg_pool: asyncpg.Pool) -> AsyncIterator[PostgresConversationStore]:
    store = PostgresConversationStore(pg_pool)
    yield store
    await store.close()


@pytest.fixture
async def cached(database: PostgresConversationStore) -> CachedConversationStore:
    return CachedConversationStore(database, max_sessions=3)


async def _change_behind_the_back(
    pool: asyncpg.Pool, session_id: str, state: dict[str, Any]
) -> None:
    await pool.execute("UPDATE user_sessions SET metadata = $2 WHERE id = $1", session_id, state)


async def test_reads_after_a_save_come_from_memory(
    cached: CachedConversationStore,
    database: PostgresConversationStore,
    pg_pool: asyncpg.Pool,
    unique: Callable[[str], str],
) -> None:
    session = cached.new(bot_id=unique("bot"), channel="web", user_id="u")
    session.state = {"step": 1}
    await cached.save(session, append=[HistoryEntry("user", "hi")])
    await _change_behind_the_back(pg_pool, session.id, {"step": "elsewhere"})

    from_memory = await cached.get(session.id)
    found = await cached.find_active(bot_id=session.bot_id, channel="web", user_id="u")
    from_database = await database.get(session.id)
    assert from_memory is not None and from_memory.state == {"step": 1}
    assert found is not None and found.state == {"step": 1}
    assert from_database is not None and from_database.state == {"step": "elsewhere"}


async def test_each_read_is_a_copy_a_turn_may_change(
    cached: CachedConversationStore, unique: Callable[[str], str]
) -> None:
    session = await cached.create(bot_id=unique("bot"), channel="web", user_id="u")
    first = await cached.get(session.id)
    assert first is not None
    first.state["dialog"] = {"pc": 4}  # a turn that fails before saving
    first.status = "closed"

    again = await cached.get(session.id)
    assert again is not None and (again.state, again.status) == ({}, "active")


async def test_a_failed_save_leaves_the_next_read_to_the_database(
    cached: CachedConversationStore, pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    session = await cached.create(bot_id=unique("bot"), channel="web", user_id="u")
    await _change_behind_the_back(pg_pool, session.id, {"from": "database"})
    session.state = {"from": "the failed turn"}
    with pytest.raises(StorageError):
        await cached.save(session, append=[HistoryEntry("x" * 500, "role too long")])

    loaded = await cached.get(session.id)
    assert loaded is not None and loaded.state == {"from": "database"}


async def test_memory_is_bounded_least_recently_used_first(
    cached: CachedConversationStore, pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    a, b, c = [await cached.create(bot_id=bot, channel="web", user_id=u) for u in "abc"]
    assert await cached.get(a.id) is not None  # a is now the most recently used
    d = await cached.create(bot_id=bot, channel="web", user_id="d")  # evicts b
    assert len(cached) == 3
    for s in (a, b, c, d):
        await _change_behind_the_back(pg_pool, s.id, {"changed": s.user_id})

    states = {s.user_id: (await cached.get(s.id)).state for s in (a, c, d)}  # type: ignore[union-attr]
    assert states == {"a": {}, "c": {}, "d": {}}
    evicted = await cached.get(b.id)
    assert evicted is not None and evicted.state == {"changed": "b"}


async def test_reading_an_older_session_does_not_make_it_the_active_one(
    database: PostgresConversationStore, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    older = await database.create(bot_id=bot, channel="web", user_id="u")
    newer = await database.create(bot_id=bot, channel="web", user_id="u")
    cached = CachedConversationStore(database)

    assert (await cached.get(older.id)) is not None
    found = await cached.find_active(bot_id=bot, channel="web", user_id="u")
    assert found is not None and found.id == newer.id

    await cached.save(older)  # saving makes it the most recently updated
    found = await cached.find_active(bot_id=bot, channel="web", user_id="u")
    assert found is not None and found.id == older.id


async def test_a_closed_session_is_no_longer_found_active(
    cached: CachedConversationStore, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    session = await cached.create(bot_id=bot, channel="web", user_id="u")
    session.status = "closed"
    await cached.save(session)
    assert await cached.find_active(bot_id=bot, channel="web", user_id="u") is None


async def test_the_bound_must_allow_one_session(database: PostgresConversationStore) -> None:
    with pytest.raises(ValueError):
        CachedConversationStore(database, max_sessions=0)
