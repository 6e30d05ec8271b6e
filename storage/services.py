"""Open every store the process needs from its settings, and close them again.

``DATABASE_URL`` set: an asyncpg pool to that server; unset: the embedded
PostgreSQL under ``<data_dir>/postgres``. Migrations are applied on open.
``REDIS_URL`` set: cache, locks, pub/sub, the LLM answer cache and rate limits' buckets in
Redis; unset:
in-process.
``S3_*`` set: files (media) in that bucket; unset: under ``<data_dir>/blobs``.

The gateway opens :class:`Stores` once in its ``cleanup_ctx`` (see
:func:`stores`) and keeps it under a ``web.AppKey``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis

from config.settings import S3Settings, Settings
from storage.api_key_cache import CachedApiKeys
from storage.api_keys import PostgresApiKeyStore
from storage.base import (
    BotConfigStore,
    Cache,
    ConversationStore,
    ConversationWindows,
    Inbox,
    Locks,
    MediaRecords,
    MemoryStore,
    Outbox,
    PubSub,
    RateBuckets,
    TableStore,
)
from storage.blobs_base import BlobStore
from storage.blobs_fs import FilesystemBlobStore
from storage.blobs_s3 import S3BlobStore, S3Config
from storage.embedded_postgres import EmbeddedPostgres
from storage.handoff_base import HandoffStore
from storage.handoffs import PostgresHandoffStore
from storage.inbox import PostgresInbox
from storage.known_sessions import KnownSessions
from storage.llm_cache_base import AnswerStore
from storage.llm_cache_memory import MemoryAnswers
from storage.llm_cache_redis import RedisAnswers
from storage.media_records import PostgresMediaRecords
from storage.memory import MemoryCache, MemoryLocks, MemoryPubSub
from storage.migrate import migrate
from storage.outbox import PostgresConversationWindows, PostgresOutbox
from storage.postgres import (
    PostgresBotConfigStore,
    PostgresConversationStore,
    PostgresMemoryStore,
    create_pool,
    init_connection,
    quote_ident,
)
from storage.postgres_tables import PostgresTableStore
from storage.rate_buckets import FallbackRateBuckets, MemoryRateBuckets, RedisRateBuckets
from storage.redis import DEFAULT_PREFIX, RedisCache, RedisLocks, RedisPubSub, connect

log = logging.getLogger(__name__)

# Conversations whose last session an instance on the embedded database remembers (see
# storage/known_sessions.py): a few hundred bytes each.
EMBEDDED_KNOWN_SESSIONS = 10_000

PING_TIMEOUT = 2.0  # seconds; a slower answer counts as unreachable for /ready


@dataclass(slots=True)
class Stores:
    """Every store of the process, plus the resources behind them to close."""

    conversations: ConversationStore
    bot_configs: BotConfigStore
    memory: MemoryStore
    tables: TableStore
    inbox: Inbox
    outbox: Outbox
    windows: ConversationWindows
    cache: Cache
    locks: Locks
    pubsub: PubSub
    pool: asyncpg.Pool
    blobs: BlobStore
    redis: aioredis.Redis | None = None
    embedded: EmbeddedPostgres | None = None
    # The semantic cache's answers (pipeline.llm_cache), beside the cache they share Redis with.
    answers: AnswerStore = field(default_factory=MemoryAnswers)
    # Rate limits' token buckets: in Redis when configured (every instance shares them).
    rate_buckets: RateBuckets = field(default_factory=MemoryRateBuckets)
    # The sessions this instance wrote last, for turns that may skip their read (shared by
    # the inbox and the conversation store; None: every turn reads).
    known_sessions: KnownSessions | None = None
    # The web API's keys (hashed) and the gateway's signing keys, on the same pool; verified
    # keys remembered for seconds while the instance hears revocations (its listen() task).
    api_keys: CachedApiKeys = field(init=False)
    # Conversations handed to people (TRANSFER TO HUMAN), on the same pool.
    handoffs: HandoffStore = field(init=False)
    # Which attachments of which messages are in the blob store.
    media: MediaRecords = field(init=False)

    def __post_init__(self) -> None:
        self.api_keys = CachedApiKeys(PostgresApiKeyStore(self.pool), self.pubsub)
        self.handoffs = PostgresHandoffStore(self.pool)
        self.media = PostgresMediaRecords(self.pool)

    async def ping(self) -> dict[str, bool]:
        """Whether each configured backend answers, for ``/ready``.

        Keys: ``"postgres"`` always; ``"redis"`` only when Redis is configured
        (the in-process cache, locks and pub/sub cannot be unreachable), ``"s3"`` only
        when files are kept on S3.
        """
        checks = {"postgres": self._ping_postgres()}
        if self.redis is not None:
            checks["redis"] = self._ping_redis(self.redis)
        if isinstance(self.blobs, S3BlobStore):
            checks["s3"] = self._ping_blobs(self.blobs)
        results = await asyncio.gather(*checks.values())
        return dict(zip(checks, results, strict=True))

    async def _ping_postgres(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                return bool(await self.pool.fetchval("SELECT 1") == 1)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            log.warning("postgres ping failed: %s", e)
            return False

    @staticmethod
    async def _ping_redis(client: aioredis.Redis) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                return bool(await client.ping())
        except (TimeoutError, OSError, aioredis.RedisError) as e:
            log.warning("redis ping failed: %s", e)
            return False

    @staticmethod
    async def _ping_blobs(blobs: BlobStore) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                return await blobs.ping()
        except TimeoutError:
            log.warning("blob store ping timed out")
            return False

    async def close(self) -> None:
        """Close the Redis client, the stores and the pool, then stop the embedded server."""
        try:
            await self.blobs.close()
            if self.redis is not None:
                await self.redis.aclose()
            await self.conversations.close()
            await self.inbox.close()
            await self.pool.close()
        finally:
            if self.embedded is not None:
                await self.embedded.stop()


async def open_stores(
    settings: Settings,
    *,
    schema: str | None = None,
    redis_prefix: str = DEFAULT_PREFIX,
    pool_max_size: int = 10,
) -> Stores:
    """Open (and migrate) every store ``settings`` asks for.

    ``schema`` puts the tables in that PostgreSQL schema (created if needed)
    instead of ``public``; ``redis_prefix`` namespaces every Redis key.
    """
    blobs = await open_blobs(settings)
    try:
        embedded, dsn = await _database(settings)
    except BaseException:
        await blobs.close()
        raise
    pool: asyncpg.Pool | None = None
    client: aioredis.Redis | None = None
    try:
        pool = await create_pool(dsn, schema=schema, max_size=pool_max_size)
        applied = await migrate(pool)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        if settings.redis_url:
            client = connect(settings.redis_url)
            cache: Cache = RedisCache(client, prefix=redis_prefix)
            locks: Locks = RedisLocks(client, prefix=redis_prefix)
            pubsub: PubSub = RedisPubSub(client, prefix=redis_prefix)
            answers: AnswerStore = RedisAnswers(client, prefix=redis_prefix)
            # A Redis outage leaves each instance limiting on its own, never the gate open.
            buckets: RateBuckets = FallbackRateBuckets(
                RedisRateBuckets(client, prefix=redis_prefix), MemoryRateBuckets()
            )
        else:
            cache, locks, pubsub = MemoryCache(), MemoryLocks(), MemoryPubSub()
            answers = MemoryAnswers()
            buckets = MemoryRateBuckets()
    except BaseException:
        await blobs.close()
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.close()
        if embedded is not None:
            await embedded.stop()
        raise
    remembered = settings.known_sessions
    if remembered is None:
        remembered = EMBEDDED_KNOWN_SESSIONS if embedded is not None else 0
    known = KnownSessions(remembered) if remembered else None
    return Stores(
        conversations=PostgresConversationStore(pool, known=known),
        bot_configs=PostgresBotConfigStore(pool),
        memory=PostgresMemoryStore(pool),
        tables=PostgresTableStore(pool),
        inbox=PostgresInbox(pool, known=known),
        outbox=PostgresOutbox(pool),
        windows=PostgresConversationWindows(pool),
        cache=cache,
        locks=locks,
        pubsub=pubsub,
        pool=pool,
        blobs=blobs,
        redis=client,
        embedded=embedded,
        answers=answers,
        rate_buckets=buckets,
        known_sessions=known,
    )


@asynccontextmanager
async def stores(
    settings: Settings,
    *,
    schema: str | None = None,
    redis_prefix: str = DEFAULT_PREFIX,
    pool_max_size: int = 10,
) -> AsyncIterator[Stores]:
    """:func:`open_stores` for the lifetime of an ``async with`` (or a ``cleanup_ctx``)."""
    opened = await open_stores(
        settings, schema=schema, redis_prefix=redis_prefix, pool_max_size=pool_max_size
    )
    try:
        yield opened
    finally:
        await opened.close()


async def run_migrations(settings: Settings, *, schema: str | None = None) -> list[str]:
    """Apply pending migrations to the configured database; ``botserver migrate``."""
    embedded, dsn = await _database(settings)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            if schema:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
                await conn.execute(f"SET search_path TO {quote_ident(schema)}")
            await init_connection(conn)
            return await migrate(conn)
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            await embedded.stop()


async def open_blobs(settings: Settings) -> BlobStore:
    """The blob store the settings ask for: the S3 bucket of ``settings.s3``, else the
    filesystem under ``<data_dir>/blobs``. An S3 that cannot be used is an error here (the
    process does not start), never a quiet fallback to the disk."""
    if settings.s3 is not None:
        return await S3BlobStore(s3_config(settings.s3)).open_store()
    return await FilesystemBlobStore(settings.data_dir / "blobs").open_store()


def s3_config(s3: S3Settings) -> S3Config:
    return S3Config(
        bucket=s3.bucket,
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        public_url=s3.public_url,
    )


async def _database(settings: Settings) -> tuple[EmbeddedPostgres | None, str]:
    if settings.database_url:
        return None, settings.database_url
    embedded = EmbeddedPostgres(settings.data_dir)
    return embedded, await embedded.start()
