"""The inbox on PostgreSQL: durable claims of inbound messages, leased in order.

A webhook's message is written here before the provider is answered, unique
per (bot, channel, external id): a redelivery finds its row and is dropped.
Workers lease rows with ``FOR UPDATE SKIP LOCKED``; only the oldest active
row of a conversation can be leased, which keeps each conversation in order
across every instance on the same database. Puts of one conversation take an
advisory lock for their transaction (migration 0010), so that a
conversation's rows commit in the order of their ``seq``, and a put that leases
its message sees every earlier one. A turn
marks its row done in the statement that saves its session (see
:mod:`storage.postgres`), so the claim, the session, the history and the
replies commit together.

Puts of concurrent webhooks share one statement (:mod:`storage.batching`). A web
request that runs its own turn writes and leases its message in one statement
(:meth:`PostgresInbox.put_and_claim`), which also reads the turn's session: one
round trip and one commit before the turn, where a put and a lease took two.
A web request whose message has no id of its own reads instead
(:meth:`PostgresInbox.reserve`), and its message is written with the turn's outcome
(migration 0017, in :mod:`storage.postgres`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from storage.base import (
    Claim,
    Gatherer,
    InboxCounts,
    InboxItem,
    InboxOutcome,
    InboxPut,
    SessionRead,
)
from storage.batching import Batcher
from storage.known_sessions import KnownSessions
from storage.postgres import (
    DatabaseError,
    _session,
    as_uuid,
    conversation_lock_key,
    store_connections,
    translate_errors,
)

# New rows only (a duplicate inserts nothing and is answered None); each new
# message also moves its conversation's window when the channel keeps one. A row
# asked to be leased is inserted running, leased to the batch's token, when no
# other message of its conversation is active (the function of migration 0010,
# which orders the puts of one conversation across transactions).
_PUT = "SELECT * FROM inbox_put($1::json, $2::bigint[], $3::float8, $4::uuid)"

# The oldest active row of each conversation, if it is due (pending and
# available, or running with an expired lease). Rows locked by a concurrent
# claim are skipped; a later row of a conversation whose oldest row is being
# claimed right now still sees that row active, so it is never taken early.
# "Oldest" is one probe of idx_inbox_conversation (its first row in seq order):
# written as NOT EXISTS, the planner, going by the statistics of a table whose
# active rows are few, scanned that whole index for each candidate instead, and
# with it every entry that finished rows leave behind until vacuum.
_CLAIMABLE = """
      AND i.seq = (
          SELECT o.seq FROM inbox o
          WHERE o.bot_id = i.bot_id AND o.channel = i.channel
            AND o.conversation = i.conversation AND o.status IN ('pending', 'running')
          ORDER BY o.seq
          LIMIT 1)
"""

_LEASE = """
UPDATE inbox i
SET status = 'running', lease_token = $4::uuid, attempts = i.attempts + 1,
    lease_until = now() + $3 * interval '1 second'
FROM c WHERE i.seq = c.seq
RETURNING i.seq, i.bot_id, i.channel, i.conversation, i.external_id, i.message, i.attempts,
          i.received_at, i.live
"""

_CLAIM = f"""
WITH c AS (
    SELECT i.seq FROM inbox i
    WHERE i.finished_at IS NULL
      AND ((i.status = 'pending' AND i.available_at <= now())
           OR (i.status = 'running' AND i.lease_until < now()))
      AND ($2::text IS NULL OR i.bot_id = $2)
      {_CLAIMABLE}
    ORDER BY i.seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
{_LEASE}
"""

# A turn whose message is written with its outcome (see PostgresInbox.reserve): for each
# message, whether its conversation has an active message (it must then wait, written
# first), else the turn's session with its row version, read as inbox_put reads it. A
# statement that writes nothing (the message's seq comes from PostgresInbox._next_seq).
_RESERVE = """
SELECT k.i, a.busy IS NOT NULL,
       s.id, s.bot_id, s.channel, s.user_id, s.status, s.metadata, s.created_at, s.updated_at,
       s.version
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
    AS k(bot_id, channel, conversation, session_id, i)
LEFT JOIN LATERAL (
    SELECT true AS busy FROM inbox o
    WHERE o.bot_id = k.bot_id AND o.channel = k.channel
      AND o.conversation = k.conversation AND o.status IN ('pending', 'running')
    LIMIT 1
) a ON true
LEFT JOIN LATERAL (
    (SELECT u.id::text AS id, u.bot_id, u.channel, u.user_id, u.status, u.metadata,
            u.created_at, u.updated_at, u.xmin::text::bigint AS version
     FROM user_sessions u
     WHERE a.busy IS NULL AND k.session_id IS NOT NULL AND u.id = k.session_id::uuid)
    UNION ALL
    (SELECT u.id::text, u.bot_id, u.channel, u.user_id, u.status, u.metadata,
            u.created_at, u.updated_at, u.xmin::text::bigint
     FROM user_sessions u
     WHERE a.busy IS NULL AND k.session_id IS NULL
       AND u.bot_id = k.bot_id AND u.channel = k.channel AND u.user_id = k.conversation
       AND u.status = 'active'
     ORDER BY u.updated_at DESC
     LIMIT 1)
) s ON true
"""

# Seqs for the turns written with their outcome (see PostgresInbox._next_seq).
SEQ_BLOCK = 64
_SEQS = "SELECT nextval('inbox_seq_seq') FROM generate_series(1, $1)"

# One named row, found by its key (a request leasing the message it just wrote, when
# an earlier message of its conversation kept it waiting): a separate statement, for a
# filter on the active rows would visit every index entry that finished rows left
# behind until vacuum removes them. Unfinished (finished_at NULL) means pending or
# running; the filter names no status list, so that the lookup is by seq (a status
# list made idx_inbox_conversation look as cheap, scanned whole for its fourth column).
_CLAIM_ONE = f"""
WITH c AS (
    SELECT i.seq FROM inbox i
    WHERE i.seq = $1 AND i.finished_at IS NULL
      AND (i.status <> 'running' OR i.lease_until < now())
      {_CLAIMABLE}
    FOR UPDATE SKIP LOCKED
)
{_LEASE.replace("$3", "$2").replace("$4", "$3")}
"""

# A lease_token is set only while its row runs (the lease sets it, every way out of
# running clears it), so it stands for status = 'running' here: a status condition
# would let the planner pick idx_inbox_conversation, whose fourth column is seq,
# and scan it whole (see _CLAIM_ONE).
_EXTEND = """
UPDATE inbox SET lease_until = now() + $3 * interval '1 second'
WHERE seq = $1 AND lease_token = $2::uuid AND finished_at IS NULL
"""

_RECORD_LIVE = """
UPDATE inbox SET live = coalesce(live, '[]'::jsonb) || jsonb_build_array($3::jsonb)
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'running'
"""

_RETRY = """
UPDATE inbox SET status = 'pending', lease_token = NULL, lease_until = NULL, last_error = $3,
    available_at = now() + $4 * interval '1 second'
WHERE seq = $1 AND lease_token = $2::uuid AND finished_at IS NULL
"""

_FINISH = """
UPDATE inbox SET status = $3, lease_token = NULL, lease_until = NULL, last_error = $4,
    finished_at = now()
WHERE seq = $1 AND lease_token = $2::uuid AND finished_at IS NULL
"""

# A message folded into another's turn (an album's item, a burst's line: status
# 'merged') has the outcome of the row that carries it (migration 0016).
# (A subquery by key: a join was planned as a hash of the whole table while it is small.)
_STATUS = """
SELECT coalesce((SELECT c.status FROM inbox c WHERE c.seq = i.merged_into), i.status)
FROM inbox i
WHERE i.bot_id = $1 AND i.channel = $2 AND i.external_id = $3
"""

_COUNTS = """
SELECT count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'running'),
       (SELECT count(*) FROM inbox WHERE bot_id = $1 AND channel = $2 AND status = 'dead'),
       (SELECT max(received_at) FROM inbox WHERE bot_id = $1 AND channel = $2)
FROM inbox WHERE bot_id = $1 AND channel = $2 AND status IN ('pending', 'running')
"""

# A turn's replies: those delivered on its request, kept on its row, and its outbox rows
# to the same conversation (a turn may also queue TALK TO rows to other users under its
# inbox_seq: they are not replies of this message).
_OUTCOME = """
SELECT i.status, i.session_id::text, i.last_error,
       coalesce(i.replies, '[]'::jsonb)
       || coalesce((SELECT jsonb_agg(o.message ORDER BY o.seq) FROM outbox o
                    WHERE o.inbox_seq = i.seq AND o.channel = i.channel
                      AND o.conversation = i.conversation), '[]'::jsonb)
FROM inbox i
WHERE i.seq = (SELECT coalesce(f.merged_into, f.seq) FROM inbox f
               WHERE f.bot_id = $1 AND f.channel = $2 AND f.external_id = $3)
"""

# Gathering (see :meth:`PostgresInbox.gather`): the leased row, locked, with the time it
# was written (the database's clock, the same for every instance) ...
_GATHER_HEAD = """
SELECT created_at FROM inbox
WHERE seq = $1 AND lease_token = $2::uuid AND finished_at IS NULL
FOR UPDATE
"""

# ... the messages of its conversation after it, locked, oldest first, with how long after
# it each was written ...
_GATHER_NEXT = """
SELECT seq, status, message, extract(epoch FROM created_at - $5::timestamptz)::float8
FROM inbox
WHERE bot_id = $1 AND channel = $2 AND conversation = $3 AND seq > $4
  AND status IN ('pending', 'running')
ORDER BY seq
LIMIT $6
FOR UPDATE
"""

# ... and the fold: the leased row carries the merged message, the folded rows are
# finished as merged into it.
_GATHER_FOLD = """
WITH folded AS (
    UPDATE inbox SET status = 'merged', merged_into = $1, finished_at = now(),
        lease_token = NULL, lease_until = NULL
    WHERE seq = ANY($3::bigint[]) AND status = 'pending'
    RETURNING seq
)
UPDATE inbox SET message = $2
WHERE seq = $1 AND (SELECT count(*) FROM folded) = cardinality($3::bigint[])
"""

# The most messages one turn folds in (an album has at most ten items).
MAX_GATHERED = 50


def _first_claim(item: InboxItem, seq: int, token: str, *, written: bool = True) -> Claim:
    """The first lease of a message just put; not ``written``: of a message whose turn runs
    before it is written (see PostgresInbox.reserve)."""
    return Claim(
        seq=seq,
        token=token,
        bot_id=item.bot_id,
        channel=item.channel,
        conversation=item.conversation,
        external_id=item.external_id,
        message=item.message,
        attempts=1,
        received_at=item.received_at,
        written=written,
    )


def _unwritten(item: InboxItem, seq: int) -> Claim:
    return _first_claim(item, seq, str(uuid.uuid4()), written=False)


@dataclass(frozen=True, slots=True)
class _Lease:
    item: InboxItem
    lease: float
    read_session: bool
    session_id: str | None  # canonical, or None


class PostgresInbox:
    """:class:`storage.base.Inbox` on the ``inbox`` table.

    Concurrent :meth:`put` calls share one statement on ``connections``
    connections kept from the pool; :meth:`close` gives them back.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, connections: int = 4, known: KnownSessions | None = None
    ) -> None:
        self._pool = pool
        self._db = store_connections(pool, size=connections)
        self._known = known
        self._seqs: deque[int] = deque()  # reserved for turns that skip their read
        self._seq_refill: asyncio.Future[None] | None = None
        # One message id never shares a batch with itself: its duplicate must see it.
        self._puts: Batcher[InboxItem, int | None] = Batcher(
            self._put_batch,
            key=lambda item: (item.bot_id, item.channel, item.external_id),
            max_in_flight=connections,
        )
        # Reads of turns written with their outcome: one conversation's, one at a time.
        self._reserves: Batcher[_Lease, InboxPut | None] = Batcher(
            self._reserve_batch,
            key=lambda entry: (entry.item.bot_id, entry.item.channel, entry.item.conversation),
            max_in_flight=connections,
        )
        # Nor, for puts that lease, one conversation: its second message must see the
        # first active. (The database orders them too, across instances.)
        self._leases: Batcher[_Lease, InboxPut] = Batcher(
            self._put_and_lease_batch,
            key=lambda entry: (entry.item.bot_id, entry.item.channel, entry.item.conversation),
            max_in_flight=connections,
        )

    async def put(self, item: InboxItem) -> int | None:
        self._forget(item)
        return await self._puts.submit(item)

    def _forget(self, item: InboxItem) -> None:
        """A message of the conversation may be in flight: its next turn must read."""
        if self._known is not None:
            self._known.forget((item.bot_id, item.channel, item.conversation))

    async def reserve(self, item: InboxItem, *, session_id: str | None = None) -> InboxPut | None:
        key = None
        if session_id is not None:
            key = as_uuid(session_id)
            if key is None:  # a malformed id finds nothing: the written path refuses it
                return None
        if self._known is not None:
            known = self._known.get((item.bot_id, item.channel, item.conversation))
            if known is not None and (key is None or known.id == key):
                # This instance wrote the conversation's last turn: the read is skipped
                # (see storage.known_sessions), its commit checks as it always does.
                seq = await self._next_seq()
                read = SessionRead(key, item.bot_id, item.channel, item.conversation, known)
                return InboxPut(seq, _unwritten(item, seq), read)
        return await self._reserves.submit(_Lease(item, 0.0, True, key))

    async def _next_seq(self) -> int:
        """A seq from the inbox's sequence for a turn written with its outcome, taken 64 at
        a time (gaps in it are harmless: seq only orders the rows)."""
        while not self._seqs:
            refill = self._seq_refill
            if refill is not None:
                await asyncio.shield(refill)
                continue
            refill = self._seq_refill = asyncio.get_running_loop().create_future()
            try:
                with translate_errors:
                    rows = await self._db.fetch(_SEQS, SEQ_BLOCK)
                self._seqs.extend(row[0] for row in rows)
            finally:
                self._seq_refill = None
                refill.set_result(None)
        return self._seqs.popleft()

    async def _reserve_batch(self, entries: Sequence[_Lease]) -> list[InboxPut | None]:
        with translate_errors:
            rows = await self._db.fetch(
                _RESERVE,
                [e.item.bot_id for e in entries],
                [e.item.channel for e in entries],
                [e.item.conversation for e in entries],
                [e.session_id for e in entries],
            )
        found: list[InboxPut | None] = [None] * len(entries)
        for row in rows:
            if row[1]:
                continue  # an earlier message of the conversation is active
            entry = entries[row[0] - 1]
            item = entry.item
            session = _session(row[2:], row[10]) if row[2] is not None else None
            read = SessionRead(
                entry.session_id, item.bot_id, item.channel, item.conversation, session
            )
            seq = await self._next_seq()
            found[row[0] - 1] = InboxPut(seq, _unwritten(item, seq), read)
        return found

    async def put_and_claim(
        self,
        item: InboxItem,
        *,
        lease: float,
        read_session: bool = False,
        session_id: str | None = None,
    ) -> InboxPut:
        key = None
        if session_id is not None:
            key = as_uuid(session_id)
            read_session = read_session and key is not None  # a malformed id finds nothing
        self._forget(item)
        return await self._leases.submit(_Lease(item, lease, read_session, key))

    async def _put_batch(self, items: Sequence[InboxItem]) -> list[int | None]:
        rows = await self._run_put([_Lease(item, 0.0, False, None) for item in items], None)
        return [row[1] if row is not None else None for row in rows]

    async def _put_and_lease_batch(self, entries: Sequence[_Lease]) -> list[InboxPut]:
        token = str(uuid.uuid4())
        rows = await self._run_put(entries, token)
        results: list[InboxPut] = []
        for entry, row in zip(entries, rows, strict=True):
            if row is None:
                results.append(InboxPut(None, None))
                continue
            if not row[2]:
                results.append(InboxPut(row[1], None))
                continue
            item = entry.item
            claim = _first_claim(item, row[1], token)
            read = None
            if row[3]:
                found = _session(row[4:]) if row[4] is not None else None
                read = SessionRead(
                    entry.session_id, item.bot_id, item.channel, item.conversation, found
                )
            results.append(InboxPut(row[1], claim, read))
        return results

    async def _run_put(
        self, entries: Sequence[_Lease], token: str | None
    ) -> list[asyncpg.Record | None]:
        """Each entry's row of inbox_put (``None`` for a duplicate)."""
        batch = orjson.dumps(
            [
                {
                    "i": index,
                    "bot_id": item.bot_id,
                    "channel": item.channel,
                    "external_id": item.external_id,
                    "conversation": item.conversation,
                    "message": item.message,
                    "received_at": item.received_at,
                    "delay": item.delay,
                    "window_": item.window,
                    "lease": token is not None,
                    "session_id": entry.session_id,
                    "read_session": entry.read_session,
                }
                for index, entry in enumerate(entries)
                for item in (entry.item,)
            ]
        ).decode()
        keys = sorted(
            {
                conversation_lock_key(e.item.bot_id, e.item.channel, e.item.conversation)
                for e in entries
            }
        )
        # One lease for the batch: the longest asked for (callers share one policy).
        lease = max(entry.lease for entry in entries)
        with translate_errors:
            rows = await self._db.fetch(_PUT, batch, keys, lease, token)
        found: list[asyncpg.Record | None] = [None] * len(entries)
        for row in rows:
            found[row[0]] = row
        return found

    async def claim(
        self, *, limit: int, lease: float, seq: int | None = None, bot_id: str | None = None
    ) -> list[Claim]:
        token = str(uuid.uuid4())
        with translate_errors:
            if seq is not None:
                rows = await self._db.fetch(_CLAIM_ONE, seq, lease, token)
            else:
                rows = await self._pool.fetch(_CLAIM, limit, bot_id, lease, token)
        claims = [
            Claim(
                seq=r[0],
                token=token,
                bot_id=r[1],
                channel=r[2],
                conversation=r[3],
                external_id=r[4],
                message=r[5],
                attempts=r[6],
                received_at=r[7],
                live=tuple(r[8] or ()),
            )
            for r in rows
        ]
        claims.sort(key=lambda c: c.seq)
        if self._known is not None:
            for c in claims:
                self._known.forget((c.bot_id, c.channel, c.conversation))
        return claims

    async def gather(self, claim: Claim, gatherer: Gatherer) -> Claim | None:
        """Fold into ``claim``'s row the pending messages after it that ``gatherer`` says
        belong with it, in one transaction: the claim with the merged message (the same
        claim when nothing was folded), or ``None`` when the claim is no longer held.

        The rows looked at are locked for the decision (no other worker could lease them
        anyway: only the oldest active row of a conversation is leased); a message put
        meanwhile is a later row, not looked at, which runs a turn of its own.
        """
        with translate_errors:
            async with self._pool.acquire() as conn, conn.transaction():
                written = await conn.fetchval(_GATHER_HEAD, claim.seq, claim.token)
                if written is None:
                    return None
                rows = await conn.fetch(
                    _GATHER_NEXT,
                    claim.bot_id,
                    claim.channel,
                    claim.conversation,
                    claim.seq,
                    written,
                    MAX_GATHERED,
                )
                pending = []
                for row in rows:
                    if row[1] != "pending":
                        break
                    pending.append(row)
                decided = gatherer(claim.message, [(r[2], r[3]) for r in pending])
                if decided is None or decided[0] <= 0:
                    return claim
                count, message = decided
                folded = [r[0] for r in pending[:count]]
                result: str = await conn.execute(_GATHER_FOLD, claim.seq, message, folded)
                if not result.endswith(" 1"):
                    raise DatabaseError(f"inbox rows {folded} changed while being gathered")
        return replace(claim, message=message, merged=claim.merged + tuple(folded))

    async def extend(self, claim: Claim, *, lease: float) -> bool:
        with translate_errors:
            result: str = await self._pool.execute(_EXTEND, claim.seq, claim.token, lease)
        return result.endswith(" 1")

    async def record_live(self, claim: Claim, entry: dict[str, Any]) -> bool:
        with translate_errors:
            result: str = await self._pool.execute(_RECORD_LIVE, claim.seq, claim.token, entry)
        return result.endswith(" 1")

    async def retry(self, claim: Claim, *, delay: float, error: str) -> None:
        with translate_errors:
            await self._pool.execute(_RETRY, claim.seq, claim.token, error, delay)

    async def finish(self, claim: Claim, *, status: str, error: str | None = None) -> None:
        if status not in ("done", "dead", "dropped"):
            raise ValueError(f"a finished message is done, dead or dropped, not {status!r}")
        with translate_errors:
            await self._pool.execute(_FINISH, claim.seq, claim.token, status, error)

    async def status(self, bot_id: str, channel: str, external_id: str) -> str | None:
        with translate_errors:
            value: str | None = await self._pool.fetchval(_STATUS, bot_id, channel, external_id)
        return value

    async def counts(self, bot_id: str, channel: str) -> InboxCounts:
        with translate_errors:
            row = await self._pool.fetchrow(_COUNTS, bot_id, channel)
        assert row is not None
        last: datetime | None = row[3]
        return InboxCounts(pending=row[0], running=row[1], dead=row[2], last_received_at=last)

    async def outcome(self, bot_id: str, channel: str, external_id: str) -> InboxOutcome | None:
        with translate_errors:
            row = await self._pool.fetchrow(_OUTCOME, bot_id, channel, external_id)
        if row is None:
            return None
        return InboxOutcome(status=row[0], session_id=row[1], error=row[2], replies=row[3])

    async def close(self) -> None:
        await self._db.close()
