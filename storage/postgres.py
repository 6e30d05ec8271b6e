"""Conversation and bot-config stores on PostgreSQL through asyncpg.

The same code serves the embedded server and a production one. The hot path
of a turn is ``find_active``/``get`` then ``save``, which writes the session
(new ones included: ``new`` makes no round trip) and its new history rows in
one statement; concurrent turns share each statement (:mod:`storage.batching`).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, cast

import asyncpg
import orjson
import uuid_utils

from storage.base import (
    Claim,
    ClaimLost,
    ConversationChanged,
    HistoryAttachment,
    HistoryEntry,
    OutboxItem,
    Session,
    StorageError,
    TransferItem,
    turn_session_read,
)
from storage.batching import Batcher
from storage.known_sessions import KnownSessions
from storage.pinned_connections import PinnedConnections

# Ids travel as text both ways (``::text``, ``$1::text[]::uuid[]``): the rest of the
# gateway uses them as strings, and PostgreSQL's casts cost less than the driver
# making uuid.UUID objects and turning them back into strings.
_SESSION_COLUMNS = (
    "id::text AS id, bot_id, channel, user_id, status, metadata, created_at, updated_at"
)

# Every statement of the turn's hot path takes a batch, one element per caller
# (see storage/batching.py): parallel arrays for reads, JSON for the save.
_GET = f"SELECT {_SESSION_COLUMNS} FROM user_sessions WHERE id = ANY($1::text[]::uuid[])"

# Served by idx_sessions_bot (bot_id, channel, user_id, status); a user's few matches are sorted.
_FIND_ACTIVE = f"""
SELECT k.i, s.* FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
    AS k(bot_id, channel, user_id, i)
CROSS JOIN LATERAL (
    SELECT {_SESSION_COLUMNS} FROM user_sessions u
    WHERE u.bot_id = k.bot_id AND u.channel = k.channel AND u.user_id = k.user_id
      AND u.status = 'active'
    ORDER BY u.updated_at DESC
    LIMIT 1
) s
"""

# One statement, hence atomic and one round trip for the whole batch: new
# sessions are inserted and stored ones updated in the same snapshot; history
# rows are inserted only for sessions written here, with increasing ``seq`` in
# the order given. A session saved with an inbox claim is written only if the
# claim is still held, which the same statement marks done; its outbox rows
# go with it (the transactional outbox: a reply exists iff its turn committed), and so
# does a transfer to a person (TRANSFER TO HUMAN): the conversation is in the queue iff
# the turn that transferred it committed.
# Replies already delivered (a web request's) are kept on the claim's inbox row
# itself (``replies``), as its record: no outbox row, whose insert and two index
# entries were a quarter of the statement's cost, for a row nobody sends.
# The claim is held while its token is on an unfinished row (see storage/inbox.py:
# no status condition, which would let the planner scan a partial index for seq).
# The batch travels as JSON arrays: orjson writes them far
# faster than the driver encodes a dozen arrays element by element. The ids of
# the sessions to update also come as an array: the planner sizes a JSON record
# set at 100 rows whatever it holds, and would then rather scan the whole table
# than look each session up by its key; an array parameter it sizes right.
_SAVE = """
WITH v0 AS (
    SELECT * FROM json_to_recordset($1::json) AS v(
        id uuid, is_new bool, status text, metadata jsonb, bot_id text, channel text, user_id text,
        claim_seq bigint, claim_token uuid, replies jsonb)
), done AS (
    UPDATE inbox i SET status = 'done', lease_token = NULL, lease_until = NULL,
        finished_at = now(), session_id = v0.id, replies = v0.replies, live = NULL
    FROM v0
    WHERE i.seq = ANY($4::bigint[]) AND i.seq = v0.claim_seq
      AND i.lease_token = v0.claim_token AND i.finished_at IS NULL
    RETURNING i.seq
), v AS (
    SELECT * FROM v0 WHERE claim_seq IS NULL OR claim_seq IN (SELECT seq FROM done)
), created AS (
    INSERT INTO user_sessions (id, bot_id, channel, user_id, status, metadata)
    SELECT id, bot_id, channel, user_id, status, metadata FROM v WHERE is_new
    ON CONFLICT (id) DO NOTHING
    RETURNING id, created_at, updated_at
), updated AS (
    UPDATE user_sessions u SET status = v.status, metadata = v.metadata, updated_at = now()
    FROM v WHERE u.id = ANY($3::text[]::uuid[]) AND u.id = v.id AND NOT v.is_new
    RETURNING u.id, u.created_at, u.updated_at
), s AS (
    SELECT * FROM created UNION ALL SELECT * FROM updated
), h AS (
    INSERT INTO message_history (
        id, session_id, role, content, tokens_used, created_at, attachments)
    SELECT m.id, m.session_id, m.role, m.content, m.tokens_used, coalesce(m.created_at, now()),
           m.attachments
    FROM ROWS FROM (json_to_recordset($2::json) AS (
        id uuid, session_id uuid, role text, content text, tokens_used int, created_at timestamptz,
        attachments jsonb)
    ) WITH ORDINALITY AS m(id, session_id, role, content, tokens_used, created_at, attachments,
                           ord)
    WHERE m.session_id IN (SELECT id FROM s)
    ORDER BY m.ord
), o AS (
    INSERT INTO outbox (inbox_seq, bot_id, channel, conversation, message, status, sent_at,
                        parts_sent, provider_ids)
    SELECT r.inbox_seq, r.bot_id, r.channel, r.conversation, r.message,
           CASE WHEN r.delivered THEN 'sent' ELSE 'pending' END,
           CASE WHEN r.delivered THEN now() END,
           coalesce(r.parts_sent, 0), coalesce(r.provider_ids, '[]'::jsonb)
    FROM ROWS FROM (json_to_recordset($5::json) AS (
        session_id uuid, inbox_seq bigint, bot_id text, channel text, conversation text,
        message jsonb, delivered bool, parts_sent int, provider_ids jsonb)
    ) WITH ORDINALITY AS r(session_id, inbox_seq, bot_id, channel, conversation, message,
                           delivered, parts_sent, provider_ids, ord)
    WHERE r.session_id IN (SELECT id FROM s)
    ORDER BY r.ord
), t AS (
    INSERT INTO handoffs (session_id, bot_id, channel, conversation, attendant, department,
                          priority, reason, context)
    SELECT t.session_id, t.bot_id, t.channel, t.conversation, t.attendant, t.department,
           t.priority, t.reason, t.context
    FROM json_to_recordset($6::json) AS t(
        session_id uuid, bot_id text, channel text, conversation text, attendant text,
        department text, priority int, reason text, context text)
    WHERE t.session_id IN (SELECT id FROM s)
    ON CONFLICT (session_id) WHERE status IN ('waiting', 'active') DO NOTHING
)
SELECT id::text, created_at, updated_at FROM s
"""

# A turn whose message is not written yet (a claim not ``written``: storage/inbox.py,
# PostgresInbox.reserve) commits through the function of migration 0017, which writes the
# message with it, done, and only if its conversation did not change since its read.
_COMMIT_UNWRITTEN = "SELECT * FROM inbox_commit_unwritten($1, $2, $3, $4, $5, $6)"

_HISTORY = """
SELECT role, content, tokens_used, created_at, seq, attachments FROM message_history
WHERE session_id = $1
ORDER BY seq DESC
LIMIT $2
"""

_HISTORY_AFTER = """
SELECT role, content, tokens_used, created_at, seq, attachments FROM message_history
WHERE session_id = $1 AND seq > $3
ORDER BY seq
LIMIT $2
"""

_PUT_CONFIG = """
INSERT INTO bot_configs (bot_id, config) VALUES ($1, $2)
ON CONFLICT (bot_id) DO UPDATE SET config = EXCLUDED.config, updated_at = now()
"""

_GET_CONFIG = "SELECT config FROM bot_configs WHERE bot_id = $1"

# Bot memory is the row with user_id = ''; user memory the row with the user's id.
_GET_MEMORY = "SELECT value FROM bot_memory WHERE bot_id = $1 AND user_id = $2 AND key = $3"

_SET_MEMORY = """
INSERT INTO bot_memory (bot_id, user_id, key, value) VALUES ($1, $2, $3, $4)
ON CONFLICT (bot_id, user_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
"""

_DELETE_MEMORY = "DELETE FROM bot_memory WHERE bot_id = $1 AND user_id = $2 AND key = $3"


class DatabaseError(StorageError):
    """PostgreSQL refused a statement or could not be reached."""


class _Translate:
    """The one place where asyncpg and socket errors become :class:`DatabaseError`.

    Use the instance :data:`translate_errors` as ``with translate_errors: ...``.
    """

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


translate_errors = _Translate()


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


# Prepared statements (and the plans PostgreSQL caches for them) are renewed
# this often, in seconds: a generic plan made while a table was nearly empty
# (a sequential scan, a hash join) must not stay in use as the table grows.
PLAN_LIFETIME = 5

# Every statement of the stores is fixed text whose best plan does not depend
# on its parameters' values, so each prepared statement is planned once (per
# PLAN_LIFETIME) instead of at each execution. PostgreSQL's default ("auto")
# kept re-planning the save statement, whose array parameter makes a custom
# plan look cheaper: planning then cost more than running it (a save of one
# session: ~0.8-1.1 ms of PostgreSQL CPU re-planned, ~0.5 ms with its plan kept).
SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan"}


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    schema: str | None = None,
) -> asyncpg.Pool:
    """An asyncpg pool with the jsonb codec installed; ``schema`` sets the search path."""
    settings = dict(SERVER_SETTINGS)
    if schema:
        settings["search_path"] = quote_ident(schema)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            reset=_keep_connection_state,
            server_settings=settings,
            max_cached_statement_lifetime=PLAN_LIFETIME,
        )
        if schema:
            await pool.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        raise DatabaseError(f"cannot connect to PostgreSQL: {e}") from e
    return pool


# The statements of the hot path (the conversation store's and the inbox's, on their
# kept connections) find every row by an index (a key or an indexed prefix), so those
# connections plan without sequential scans (PostgreSQL still uses one where no index
# applies). A generic plan made while a table was small, before any statistics,
# scanned it whole where that looked cheaper than a few index probes, and kept doing
# so as it grew: on a fresh database a save of 32 sessions spent ~13 ms of
# PostgreSQL's time scanning user_sessions for the rows to update, ~0.4 ms by key.
_INDEX_ONLY = "SET enable_seqscan = off"
_INDEX_ONLY_RESET = "RESET enable_seqscan"


class _IndexedPool:
    """The pool as :class:`PinnedConnections` sees it: connections handed out set to
    :data:`_INDEX_ONLY`, and reset when they go back."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def acquire(self) -> Any:
        conn = await self._pool.acquire()
        try:
            await conn.execute(_INDEX_ONLY)
        except BaseException:
            await self._pool.release(conn)
            raise
        return conn

    async def release(self, conn: Any) -> None:
        try:
            if not conn.is_closed() and not conn.is_in_transaction():
                await conn.execute(_INDEX_ONLY_RESET)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass  # a broken connection: the pool resets or replaces it
        finally:
            await self._pool.release(conn)


def store_connections(pool: asyncpg.Pool, *, size: int) -> PinnedConnections:
    """``size`` connections kept from ``pool`` for a store's hot statements (see above)."""
    return PinnedConnections(cast(asyncpg.Pool, _IndexedPool(pool)), size=size)


async def _keep_connection_state(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset on release (``RESET ALL; UNLISTEN *; CLOSE ALL; unlock advisory``).

    That reset is one more round trip per query, doubling the cost of a turn;
    the stores never leave session state behind (no LISTEN, cursors, session
    settings or session-level advisory locks: migrations use transaction locks).
    """


def quote_ident(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def as_uuid(value: str) -> str | None:
    """``value`` as a canonical UUID string (what the driver sends), or ``None``.

    Session ids come back from the database canonical; checking those with a
    regular expression is much cheaper than building a ``uuid.UUID`` each time.
    """
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def new_id() -> str:
    """A new row id: a time-ordered UUID (version 7).

    Rows get ids in the order they are written, so each primary key insert
    lands at the right edge of its index. A random (version 4) id puts every
    row on a random leaf page of a large index: a save of 10 sessions with 3
    history rows each cost PostgreSQL 87 us of CPU per session with random ids
    and 53 us with ordered ones. Making one also costs a tenth of uuid.uuid4().
    """
    return str(uuid_utils.uuid7())


def conversation_lock_key(bot_id: str, channel: str, conversation: str) -> int:
    """The advisory lock key that orders the writes of one conversation's messages
    (migrations 0010 and 0017): a 64-bit hash, the same in every process (Python's own
    ``hash`` of a string is not)."""
    digest = hashlib.blake2b(
        f"botserver.inbox\x1f{bot_id}\x1f{channel}\x1f{conversation}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def _session(row: Any, version: int | None = None) -> Session:
    return Session(
        id=row[0],
        bot_id=row[1],
        channel=row[2],
        user_id=row[3],
        status=row[4],
        state=row[5],
        created_at=row[6],
        updated_at=row[7],
        version=version,
    )


class PostgresConversationStore:
    """:class:`storage.base.ConversationStore` on ``user_sessions`` and ``message_history``.

    Reads, creations and saves of concurrent turns are batched, one statement
    per batch (see :mod:`storage.batching`), on ``connections`` connections
    kept from the pool (see :mod:`storage.pinned_connections`): :meth:`close`
    gives them back. A turn whose session was read with its inbox lease
    (:data:`storage.base.turn_session_read`) gets that read from its first
    matching :meth:`get` or :meth:`find_active`, without a round trip. With ``known``
    (shared with the instance's inbox: :mod:`storage.known_sessions`), each session a
    turn not written before its commit commits is remembered for the next turn of its
    conversation, and every other save forgets it.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        connections: int = 4,
        max_in_flight: int = 4,
        known: KnownSessions | None = None,
    ) -> None:
        self._db = store_connections(pool, size=connections)
        self._known = known
        self._gets = Batcher(self._get_batch, max_in_flight=max_in_flight)
        self._finds = Batcher(self._find_batch, max_in_flight=max_in_flight)
        self._saves = Batcher(
            self._save_batch, key=lambda item: item.session.id, max_in_flight=max_in_flight
        )
        # Commits of turns whose message is not written yet: one conversation's never share
        # a statement (the checks of both would see the conversation as it was before).
        self._unwritten = Batcher(
            self._commit_unwritten_batch,
            key=lambda item: _conversation(item.claim) if item.claim else item.session.id,
            max_in_flight=max_in_flight,
        )

    async def create(self, *, bot_id: str, channel: str, user_id: str) -> Session:
        session = self.new(bot_id=bot_id, channel=channel, user_id=user_id)
        await self.save(session)
        return session

    async def get(self, session_id: str) -> Session | None:
        key = as_uuid(session_id)
        if key is None:
            return None
        read = turn_session_read.get()
        if read is not None and read.take(key, "", "", ""):
            return read.session
        return await self._gets.submit(key)

    async def find_active(self, *, bot_id: str, channel: str, user_id: str) -> Session | None:
        read = turn_session_read.get()
        if read is not None and read.take(None, bot_id, channel, user_id):
            return read.session
        return await self._finds.submit((bot_id, channel, user_id))

    def new(self, *, bot_id: str, channel: str, user_id: str) -> Session:
        return Session(id=new_id(), bot_id=bot_id, channel=channel, user_id=user_id, stored=False)

    async def save(
        self,
        session: Session,
        *,
        append: Sequence[HistoryEntry] = (),
        claim: Claim | None = None,
        outbox: Sequence[OutboxItem] = (),
        handoff: TransferItem | None = None,
    ) -> None:
        if as_uuid(session.id) != session.id:
            raise StorageError(f"no session {session.id!r} to save")
        save = _Save(session, tuple(append), claim, tuple(outbox), handoff)
        known = self._known
        if claim is None or claim.written:
            if known is not None:  # written another way: the next turn reads it
                known.forget((session.bot_id, session.channel, session.user_id))
            session.created_at, session.updated_at = await self._saves.submit(save)
            session.stored = True
            return
        try:
            session.created_at, session.updated_at, version = await self._unwritten.submit(save)
        except StorageError:
            if known is not None:
                known.forget((session.bot_id, session.channel, session.user_id))
            raise
        session.stored = True
        if known is not None:
            known.remember(session, version)

    async def _get_batch(self, keys: Sequence[str]) -> list[Session | None]:
        with translate_errors:
            rows = await self._db.fetch(_GET, list(keys))
        by_id = {row[0]: _session(row) for row in rows}
        return [by_id.get(key) for key in keys]

    async def _find_batch(self, items: Sequence[tuple[str, str, str]]) -> list[Session | None]:
        with translate_errors:
            rows = await self._db.fetch(
                _FIND_ACTIVE, [i[0] for i in items], [i[1] for i in items], [i[2] for i in items]
            )
        found = {row[0]: _session(row[1:]) for row in rows}
        return [found.get(index) for index in range(1, len(items) + 1)]

    async def _save_batch(
        self, items: Sequence[_Save]
    ) -> list[tuple[datetime, datetime] | BaseException]:
        batch = orjson.dumps(
            [
                {
                    "id": s.id,
                    "is_new": not s.stored,
                    "status": s.status,
                    "metadata": s.state,
                    "bot_id": s.bot_id,
                    "channel": s.channel,
                    "user_id": s.user_id,
                    "claim_seq": item.claim.seq if item.claim else None,
                    "claim_token": item.claim.token if item.claim else None,
                    "replies": [o.message for o in item.outbox if o.delivered]
                    if item.claim
                    else None,
                }
                for item in items
                for s in (item.session,)
            ]
        ).decode()
        history, outbox, handoffs = _turn_rows(items)
        stored = [item.session.id for item in items if item.session.stored]
        claims = [item.claim.seq for item in items if item.claim is not None]
        with translate_errors:
            rows = await self._db.fetch(_SAVE, batch, history, stored, claims, outbox, handoffs)
        saved = {row[0]: (row[1], row[2]) for row in rows}
        return [saved.get(item.session.id) or _not_saved(item) for item in items]

    async def _commit_unwritten_batch(
        self, items: Sequence[_Save]
    ) -> list[tuple[datetime, datetime, int] | BaseException]:
        batch = orjson.dumps(
            [
                {
                    "seq": claim.seq,
                    "bot_id": s.bot_id,
                    "channel": s.channel,
                    "external_id": claim.external_id,
                    "conversation": claim.conversation,
                    "message": claim.message,
                    "received_at": claim.received_at,
                    "id": s.id,
                    "is_new": not s.stored,
                    "status": s.status,
                    "metadata": s.state,
                    "user_id": s.user_id,
                    "version": s.version,
                    "replies": [o.message for o in item.outbox if o.delivered],
                }
                for item in items
                for s, claim in ((item.session, item.claim),)
                if claim is not None
            ]
        ).decode()
        keys = sorted(
            {
                conversation_lock_key(
                    item.claim.bot_id, item.claim.channel, item.claim.conversation
                )
                for item in items
                if item.claim is not None
            }
        )
        history, outbox, handoffs = _turn_rows(items)
        stored = [item.session.id for item in items if item.session.stored]
        with translate_errors:
            rows = await self._db.fetch(
                _COMMIT_UNWRITTEN, keys, batch, history, stored, outbox, handoffs
            )
        written = {row[0]: (row[1], row[2], row[3]) for row in rows}
        return [written.get(item.session.id) or _not_written(item) for item in items]

    async def history(
        self, session_id: str, *, limit: int = 50, after: int | None = None
    ) -> list[HistoryEntry]:
        key = as_uuid(session_id)
        if key is None or limit <= 0:
            return []
        with translate_errors:
            if after is None:
                rows = list(reversed(await self._db.fetch(_HISTORY, key, limit)))
            else:
                rows = await self._db.fetch(_HISTORY_AFTER, key, limit, after)
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], _attachments(r[5])) for r in rows]

    async def close(self) -> None:
        await self._db.close()


def _attachment_json(a: HistoryAttachment) -> dict[str, Any]:
    return {
        name: value
        for name, value in (
            ("kind", a.kind),
            ("key", a.key),
            ("content_type", a.content_type),
            ("size", a.size),
            ("sha256", a.sha256),
            ("filename", a.filename),
            ("caption", a.caption),
            ("error", a.error),
            ("transcript", a.transcript),
        )
        if value is not None
    }


def _attachments(data: Any) -> tuple[HistoryAttachment, ...]:
    if not isinstance(data, list):
        return ()
    return tuple(
        HistoryAttachment(
            kind=str(item.get("kind", "")),
            key=item.get("key"),
            content_type=item.get("content_type"),
            size=item.get("size"),
            sha256=item.get("sha256"),
            filename=item.get("filename"),
            caption=item.get("caption"),
            error=item.get("error"),
            transcript=item.get("transcript"),
        )
        for item in data
        if isinstance(item, dict)
    )


@dataclass(frozen=True, slots=True)
class _Save:
    session: Session
    append: tuple[HistoryEntry, ...]
    claim: Claim | None
    outbox: tuple[OutboxItem, ...]
    handoff: TransferItem | None = None


def _conversation(claim: Claim) -> tuple[str, str, str]:
    return (claim.bot_id, claim.channel, claim.conversation)


def _turn_rows(items: Sequence[_Save]) -> tuple[str, str, str]:
    """The history, outbox and transfer rows of a batch of saves, as the JSON arrays of the
    save statements."""
    history = orjson.dumps(
        [
            {
                "id": new_id(),
                "session_id": item.session.id,
                "role": e.role,
                "content": e.content,
                "tokens_used": e.tokens_used,
                "created_at": e.created_at,
                "attachments": [_attachment_json(a) for a in e.attachments]
                if e.attachments
                else None,
            }
            for item in items
            for e in item.append
        ]
    ).decode()
    outbox = orjson.dumps(
        [
            {
                "session_id": item.session.id,
                "inbox_seq": item.claim.seq if item.claim else None,
                "bot_id": item.session.bot_id,
                "channel": o.channel,
                "conversation": o.conversation,
                "message": o.message,
                "delivered": o.delivered,
                "parts_sent": o.parts_sent,
                "provider_ids": o.provider_ids,
            }
            for item in items
            for o in item.outbox
            if not (o.delivered and item.claim)
        ]
    ).decode()
    handoffs = orjson.dumps(
        [
            {
                "session_id": item.session.id,
                "bot_id": item.session.bot_id,
                "channel": item.session.channel,
                "conversation": item.session.user_id,
                "attendant": t.attendant,
                "department": t.department,
                "priority": t.priority,
                "reason": t.reason,
                "context": t.context,
            }
            for item in items
            if (t := item.handoff) is not None
        ]
    ).decode()
    return history, outbox, handoffs


def _not_saved(item: _Save) -> StorageError:
    session = item.session
    if item.claim is not None:
        return ClaimLost(
            f"inbox claim {item.claim.seq} is no longer held: session {session.id!r} not saved"
        )
    if session.stored:
        return StorageError(f"no session {session.id!r} to save")
    return StorageError(f"session id {session.id!r} is already taken")


def _not_written(item: _Save) -> StorageError:
    claim = item.claim
    assert claim is not None
    return ConversationChanged(
        f"conversation {claim.conversation!r} of bot {claim.bot_id!r} changed since message"
        f" {claim.seq} was read: nothing written"
    )


class PostgresBotConfigStore:
    """:class:`storage.base.BotConfigStore` on ``bot_configs``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(self, bot_id: str, config: dict[str, Any]) -> None:
        with translate_errors:
            await self._pool.execute(_PUT_CONFIG, bot_id, config)

    async def get(self, bot_id: str) -> dict[str, Any] | None:
        with translate_errors:
            config: dict[str, Any] | None = await self._pool.fetchval(_GET_CONFIG, bot_id)
        return config


class PostgresMemoryStore:
    """:class:`storage.base.MemoryStore` on ``bot_memory``.

    Keys are matched exactly (case-sensitive). Setting ``None`` removes the
    key, which then reads as ``None`` like a key never set.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, bot_id: str, key: str, *, user_id: str | None = None) -> Any:
        with translate_errors:
            return await self._pool.fetchval(_GET_MEMORY, bot_id, _memory_scope(user_id), key)

    async def set(self, bot_id: str, key: str, value: Any, *, user_id: str | None = None) -> None:
        scope = _memory_scope(user_id)
        with translate_errors:
            if value is None:
                await self._pool.execute(_DELETE_MEMORY, bot_id, scope, key)
            else:
                await self._pool.execute(_SET_MEMORY, bot_id, scope, key, value)


def _memory_scope(user_id: str | None) -> str:
    # '' stands for the bot's own memory, so it cannot also be a user's id.
    if user_id == "":
        raise ValueError("user memory needs a non-empty user_id")
    return user_id or ""
