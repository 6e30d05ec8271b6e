"""Opening the stores from settings: embedded defaults and configured servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from config.settings import Settings
from storage.base import HistoryEntry
from storage.blobs_fs import FilesystemBlobStore
from storage.embedded_postgres import EmbeddedPostgres
from storage.memory import MemoryCache, MemoryLocks, MemoryPubSub
from storage.migrate import bundled_migrations
from storage.redis import RedisCache, RedisLocks, RedisPubSub
from storage.services import Stores, open_stores, run_migrations, stores

ALL_MIGRATIONS = [m.name for m in bundled_migrations()]


async def test_defaults_are_embedded_postgres_and_in_process_stores(
    embedded_postgres: EmbeddedPostgres, embedded_data_dir: Path
) -> None:
    # Same data dir as the session's server: this adopts it, and closing
    # releases only this handle.
    async with stores(Settings(data_dir=embedded_data_dir)) as opened:
        assert opened.embedded is not None
        assert isinstance(opened.cache, MemoryCache)
        assert isinstance(opened.locks, MemoryLocks)
        assert isinstance(opened.pubsub, MemoryPubSub)
        assert await opened.ping() == {"postgres": True}
        assert await opened.pool.fetchval("SELECT count(*) FROM schema_migrations") == len(
            ALL_MIGRATIONS
        )
        # The embedded database's only writer remembers its users' sessions.
        assert opened.known_sessions is not None

    conn = await asyncpg.connect(embedded_postgres.dsn)  # the shared server still runs
    await conn.close()


async def test_configured_servers_are_used(
    postgres_url: str,
    redis_url: str,
    redis_client: aioredis.Redis,  # deletes the keys under redis_prefix at the end
    redis_prefix: str,
    server_schema: Callable[[str], str],
) -> None:
    settings = Settings(database_url=postgres_url, redis_url=redis_url)
    opened = await open_stores(
        settings, schema=server_schema("services"), redis_prefix=redis_prefix
    )
    try:
        assert opened.embedded is None
        assert isinstance(opened.cache, RedisCache)
        assert isinstance(opened.locks, RedisLocks)
        assert isinstance(opened.pubsub, RedisPubSub)
        assert await opened.ping() == {"postgres": True, "redis": True}
        assert opened.known_sessions is None  # other instances may share the server

        session = await opened.conversations.create(bot_id="b", channel="web", user_id="u")
        await opened.conversations.save(session, append=[HistoryEntry("user", "hi")])
        assert [e.content for e in await opened.conversations.history(session.id)] == ["hi"]
        await opened.cache.set("k", b"v")
        assert opened.redis is not None
        assert await opened.redis.exists(f"{redis_prefix}cache:k") == 1
    finally:
        await opened.close()


async def test_ping_reports_unreachable_backends(postgres_url: str, tmp_path: Path) -> None:
    dead_redis = aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    pool = await asyncpg.create_pool(postgres_url, min_size=0, max_size=1)
    await pool.close()  # as good as a server that went away
    broken = Stores(
        conversations=None,  # type: ignore[arg-type]
        bot_configs=None,  # type: ignore[arg-type]
        memory=None,  # type: ignore[arg-type]
        tables=None,  # type: ignore[arg-type]
        inbox=None,  # type: ignore[arg-type]
        outbox=None,  # type: ignore[arg-type]
        windows=None,  # type: ignore[arg-type]
        cache=MemoryCache(),
        locks=MemoryLocks(),
        pubsub=MemoryPubSub(),
        pool=pool,
        blobs=FilesystemBlobStore(tmp_path),
        redis=dead_redis,
    )
    try:
        assert await broken.ping() == {"postgres": False, "redis": False}
    finally:
        await dead_redis.aclose()


async def test_run_migrations_applies_once(
    postgres_url: str, server_schema: Callable[[str], str]
) -> None:
    settings = Settings(database_url=postgres_url)
    schema = server_schema("cli")
    assert await run_migrations(settings, schema=schema) == ALL_MIGRATIONS
    assert await run_migrations(settings, schema=schema) == []


async def test_unreachable_database_fails_clearly() -> None:
    from storage.postgres import DatabaseError

    with pytest.raises(DatabaseError, match="cannot connect"):
        await open_stores(Settings(database_url="postgresql://postgres@127.0.0.1:1/none"))
