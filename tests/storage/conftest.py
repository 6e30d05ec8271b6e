"""Backends for the storage contract suites.

Every contract suite runs once per backend: PostgreSQL stores against the
embedded server (started once per test session under a temporary dir) and
the real server (``TEST_DATABASE_URL``, default 127.0.0.1:5432/test);
cache, locks and pub/sub in-process and against the real Redis
(``TEST_REDIS_URL``, default 127.0.0.1:6379). Each run works in its own
PostgreSQL schema and under its own Redis key prefix, removed at the end,
so runs never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from storage.base import Cache, Locks, PubSub, RateBuckets
from storage.embedded_postgres import EmbeddedPostgres
from storage.inbox import PostgresInbox
from storage.memory import MemoryCache, MemoryLocks, MemoryPubSub
from storage.migrate import migrate
from storage.postgres import PostgresConversationStore, create_pool, quote_ident
from storage.rate_buckets import FallbackRateBuckets, MemoryRateBuckets, RedisRateBuckets
from storage.redis import RedisCache, RedisLocks, RedisPubSub

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")

RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def run_id() -> str:
    """Unique to this pytest run: schema names and Redis prefixes derive from it."""
    return RUN_ID


@pytest.fixture(scope="session")
def embedded_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data dir of the session's embedded PostgreSQL (``<dir>/postgres``)."""
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(scope="session")
async def embedded_postgres(embedded_data_dir: Path) -> AsyncIterator[EmbeddedPostgres]:
    """One embedded PostgreSQL for the whole session, stopped at its end."""
    server = EmbeddedPostgres(embedded_data_dir)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def postgres_url() -> str:
    """The real PostgreSQL server of the test machine; fails if it is unreachable."""
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as e:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable ({e}); start it first")
    await conn.close()
    return POSTGRES_URL


@pytest.fixture(scope="session")
async def redis_url() -> str:
    """The real Redis of the test machine; fails if it is unreachable."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as e:
        pytest.fail(f"Redis at {REDIS_URL} is unreachable ({e}); start it first")
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture(scope="session", params=["embedded", "server"])
def pg_dsn(request: pytest.FixtureRequest) -> str:
    """A DSN per PostgreSQL backend: the session's embedded server, then the real one."""
    if request.param == "embedded":
        server: EmbeddedPostgres = request.getfixturevalue("embedded_postgres")
        return server.dsn
    url: str = request.getfixturevalue("postgres_url")
    return url


@asynccontextmanager
async def _schemas(dsn: str, run_id: str) -> AsyncIterator[Callable[[str], str]]:
    made: list[str] = []

    def make(purpose: str) -> str:
        made.append(f"test_{run_id}_{purpose}_{uuid.uuid4().hex[:8]}")
        return made[-1]

    try:
        yield make
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            for name in made:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
async def pg_schema(pg_dsn: str, run_id: str) -> AsyncIterator[Callable[[str], str]]:
    """Names new schemas on the ``pg_dsn`` backend; every one is dropped at the end."""
    async with _schemas(pg_dsn, run_id) as make:
        yield make


@pytest.fixture
async def server_schema(postgres_url: str, run_id: str) -> AsyncIterator[Callable[[str], str]]:
    """Names new schemas on the real server; every one is dropped after the test."""
    async with _schemas(postgres_url, run_id) as make:
        yield make


@pytest.fixture(scope="session")
async def pg_pool(pg_dsn: str, pg_schema: Callable[[str], str]) -> AsyncIterator[asyncpg.Pool]:
    """A migrated pool per backend on this run's schema; tests isolate by unique ids."""
    pool = await create_pool(pg_dsn, schema=pg_schema("stores"))
    await migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture
async def fresh_schema(
    pg_dsn: str, pg_schema: Callable[[str], str]
) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose search path is a new, empty schema (for migration tests)."""
    name = pg_schema("fresh")
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f"CREATE SCHEMA {quote_ident(name)}")
    await conn.execute(f"SET search_path TO {quote_ident(name)}")
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
async def redis_client(redis_url: str, run_id: str) -> AsyncIterator[aioredis.Redis]:
    """A client to the real Redis; every key under this run's prefix is deleted at the end."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"test:{run_id}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def redis_prefix(run_id: str, request: pytest.FixtureRequest) -> str:
    """A Redis key prefix unique to this run and test."""
    return f"test:{run_id}:{uuid.uuid4().hex[:8]}:"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The cache/locks/pub-sub backend under test."""
    param: str = request.param
    return param


@pytest.fixture
def cache(backend: str, request: pytest.FixtureRequest, redis_prefix: str) -> Cache:
    if backend == "memory":
        return MemoryCache()
    return RedisCache(request.getfixturevalue("redis_client"), prefix=redis_prefix)


@pytest.fixture
def locks(backend: str, request: pytest.FixtureRequest, redis_prefix: str) -> Locks:
    if backend == "memory":
        return MemoryLocks()
    return RedisLocks(request.getfixturevalue("redis_client"), prefix=redis_prefix)


@pytest.fixture
def pubsub(backend: str, request: pytest.FixtureRequest, redis_prefix: str) -> PubSub:
    if backend == "memory":
        return MemoryPubSub()
    return RedisPubSub(request.getfixturevalue("redis_client"), prefix=redis_prefix)


@pytest.fixture(params=["memory", "redis", "redis-with-fallback"])
def rate_buckets(request: pytest.FixtureRequest, redis_prefix: str) -> RateBuckets:
    """The buckets of every backend: in process, Redis, and Redis behind the in-process
    fallback (as the gateway wires it)."""
    if request.param == "memory":
        return MemoryRateBuckets()
    redis = RedisRateBuckets(request.getfixturevalue("redis_client"), prefix=redis_prefix)
    if request.param == "redis":
        return redis
    return FallbackRateBuckets(redis, MemoryRateBuckets())


def _unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("bot")`` -> ``"bot-<random>"``: ids no other test uses."""
    return _unique


# The message path's stores, for the inbox contracts (test_*_contract.py).
@pytest.fixture
async def inbox(pg_pool: asyncpg.Pool) -> AsyncIterator[PostgresInbox]:
    opened = PostgresInbox(pg_pool)
    yield opened
    await opened.close()


@pytest.fixture
async def conversations(pg_pool: asyncpg.Pool) -> AsyncIterator[PostgresConversationStore]:
    opened = PostgresConversationStore(pg_pool)
    yield opened
    await opened.close()
