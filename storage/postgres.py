"""Conversation and bot-config stores on PostgreSQL through asyncpg.

The same code serves the embedded server and a production one. The hot path
of a turn is ``find_active``/``get`` then ``save``; each is a single prepared
statement (asyncpg caches prepared statements per connection) and ``save``
writes the session and its new history rows in one round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import asyncpg
import orjson

from storage.base import HistoryEntry, Session, StorageError

_SESSION_COLUMNS = "id, bot_id, channel, user_id, status, metadata, created_at, updated_at"

_CREATE = f"""
INSERT INTO user_sessions (id, bot_id, channel, user_id)
VALUES ($1, $2, $3, $4)
RETURNING {_SESSION_COLUMNS}
"""

_GET = f"SELECT {_SESSION_COLUMNS} FROM user_sessions WHERE id = $1"

# Served by idx_sessions_active (bot_id, channel, user_id, status, updated_at DESC).
_FIND_ACTIVE = f"""
SELECT {_SESSION_COLUMNS} FROM user_sessions
WHERE bot_id = $1 AND channel = $2 AND user_id = $3 AND status = 'active'
ORDER BY updated_at DESC
LIMIT 1
"""

# One statement, hence atomic and one round trip: the UPDATE and the INSERT
# run in the same snapshot; rows are inserted only if the session exists and
# get increasing ``seq`` in the order given.
_SAVE = """
WITH s AS (
    UPDATE user_sessions SET status = $2, metadata = $3, updated_at = now()
    WHERE id = $1
    RETURNING id, updated_at
), h AS (
    INSERT INTO message_history (session_id, role, content, tokens_used, created_at)
    SELECT s.id, m.role, m.content, m.tokens_used, coalesce(m.created_at, now())
    FROM s, unnest($4::text[], $5::text[], $6::int4[], $7::timestamptz[])
        WITH ORDINALITY AS m(role, content, tokens_used, created_at, ord)
    ORDER BY m.ord
)
SELECT updated_at FROM s
"""

_SAVE_STATE = """
UPDATE user_sessions SET status = $2, metadata = $3, updated_at = now()
WHERE id = $1
RETURNING updated_at
"""

_HISTORY = """
SELECT role, content, tokens_used, created_at FROM message_history
WHERE session_id = $1
ORDER BY seq DESC
LIMIT $2
"""

_PUT_CONFIG = """
INSERT INTO bot_configs (bot_id, config) VALUES ($1, $2)
ON CONFLICT (bot_id) DO UPDATE SET config = EXCLUDED.config, updated_at = now()
"""

_GET_CONFIG = "SELECT config FROM bot_configs WHERE bot_id = $1"


class DatabaseError(StorageError):
    """PostgreSQL refused a statement or could not be reached."""


class _Translate:
    """The one place where asyncpg and socket errors become :class:`DatabaseError`."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
            raise DatabaseError(f"{type(exc).__name__}: {exc}") from exc


_translate = _Translate()


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary wire format is a version byte followed by the JSON text.
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection setup for the pool's ``init=``: jsonb as Python data via orjson."""
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    schema: str | None = None,
) -> asyncpg.Pool:
    """An asyncpg pool with the jsonb codec installed; ``schema`` sets the search path."""
    settings = {"search_path": quote_ident(schema)} if schema else None
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            server_settings=settings,
        )
        if schema:
            await pool.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        raise DatabaseError(f"cannot connect to PostgreSQL: {e}") from e
    return pool


def quote_ident(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


def _session(row: Any) -> Session:
    return Session(
        id=str(row[0]),
        bot_id=row[1],
        channel=row[2],
        user_id=row[3],
        status=row[4],
        state=row[5],
        created_at=row[6],
        updated_at=row[7],
    )


class PostgresConversationStore:
    """:class:`storage.base.ConversationStore` on ``user_sessions`` and ``message_history``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, *, bot_id: str, channel: str, user_id: str) -> Session:
        with _translate:
            row = await self._pool.fetchrow(_CREATE, uuid.uuid4(), bot_id, channel, user_id)
        return _session(row)

    async def get(self, session_id: str) -> Session | None:
        key = _as_uuid(session_id)
        if key is None:
            return None
        with _translate:
            row = await self._pool.fetchrow(_GET, key)
        return None if row is None else _session(row)

    async def find_active(self, *, bot_id: str, channel: str, user_id: str) -> Session | None:
        with _translate:
            row = await self._pool.fetchrow(_FIND_ACTIVE, bot_id, channel, user_id)
        return None if row is None else _session(row)

    async def save(self, session: Session, *, append: Sequence[HistoryEntry] = ()) -> None:
        key = _as_uuid(session.id)
        updated_at: datetime | None = None
        if key is not None:
            with _translate:
                if append:
                    updated_at = await self._pool.fetchval(
                        _SAVE,
                        key,
                        session.status,
                        session.state,
                        [e.role for e in append],
                        [e.content for e in append],
                        [e.tokens_used for e in append],
                        [e.created_at for e in append],
                    )
                else:
                    updated_at = await self._pool.fetchval(
                        _SAVE_STATE, key, session.status, session.state
                    )
        if updated_at is None:
            raise StorageError(f"no session {session.id!r} to save")
        session.updated_at = updated_at

    async def history(self, session_id: str, *, limit: int = 50) -> list[HistoryEntry]:
        key = _as_uuid(session_id)
        if key is None or limit <= 0:
            return []
        with _translate:
            rows = await self._pool.fetch(_HISTORY, key, limit)
        return [HistoryEntry(r[0], r[1], r[2], r[3]) for r in reversed(rows)]


class PostgresBotConfigStore:
    """:class:`storage.base.BotConfigStore` on ``bot_configs``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(self, bot_id: str, config: dict[str, Any]) -> None:
        with _translate:
            await self._pool.execute(_PUT_CONFIG, bot_id, config)

    async def get(self, bot_id: str) -> dict[str, Any] | None:
        with _translate:
            config: dict[str, Any] | None = await self._pool.fetchval(_GET_CONFIG, bot_id)
        return config
