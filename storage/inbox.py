"""The inbox on PostgreSQL: durable claims of inbound messages, leased in order.

A webhook's message is written here before the provider is answered, unique
per (bot, channel, external id): a redelivery finds its row and is dropped.
Workers lease rows with ``FOR UPDATE SKIP LOCKED``; only the oldest active
row of a conversation can be leased, which keeps each conversation in order
across every instance on the same database without any other lock. A turn
marks its row done in the statement that saves its session (see
:mod:`storage.postgres`), so the claim, the session, the history and the
replies commit together.

Puts of concurrent webhooks share one statement (:mod:`storage.batching`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from storage.base import Claim, InboxCounts, InboxItem, InboxOutcome
from storage.batching import Batcher
from storage.pinned_connections import PinnedConnections
from storage.postgres import translate_errors

# New rows only (a duplicate inserts nothing and is answered None); each new
# message also moves its conversation's window when the channel keeps one.
_PUT = """
WITH v AS (
    SELECT * FROM json_to_recordset($1::json) AS v(
        i int, bot_id text, channel text, external_id text, conversation text,
        message jsonb, received_at timestamptz, delay float8, window_ bool)
), ins AS (
    INSERT INTO inbox (bot_id, channel, external_id, conversation, message, received_at,
                       available_at)
    SELECT bot_id, channel, external_id, conversation, message, received_at,
           now() + delay * interval '1 second'
    FROM v ORDER BY i
    ON CONFLICT (bot_id, channel, external_id) DO NOTHING
    RETURNING seq, bot_id, channel, external_id, conversation, received_at
), w AS (
    INSERT INTO conversation_windows AS cw (bot_id, channel, conversation, last_inbound_at)
    SELECT DISTINCT ON (ins.bot_id, ins.channel, ins.conversation)
           ins.bot_id, ins.channel, ins.conversation, ins.received_at
    FROM ins JOIN v USING (bot_id, channel, external_id)
    WHERE v.window_
    ORDER BY ins.bot_id, ins.channel, ins.conversation, ins.received_at DESC
    ON CONFLICT (bot_id, channel, conversation) DO UPDATE
    SET last_inbound_at = greatest(cw.last_inbound_at, EXCLUDED.last_inbound_at),
        closed_at = CASE WHEN EXCLUDED.last_inbound_at > cw.closed_at THEN NULL
                         ELSE cw.closed_at END
)
SELECT v.i, ins.seq FROM v JOIN ins USING (bot_id, channel, external_id)
"""

# The oldest active row of each conversation, if it is due (pending and
# available, or running with an expired lease). Rows locked by a concurrent
# claim are skipped; a later row of a conversation whose oldest row is being
# claimed right now still sees that row active, so it is never taken early.
_CLAIMABLE = """
      AND NOT EXISTS (
          SELECT 1 FROM inbox o
          WHERE o.bot_id = i.bot_id AND o.channel = i.channel
            AND o.conversation = i.conversation
            AND o.status IN ('pending', 'running') AND o.seq < i.seq)
"""

_LEASE = """
UPDATE inbox i
SET status = 'running', lease_token = $4::uuid, attempts = i.attempts + 1,
    lease_until = now() + $3 * interval '1 second'
FROM c WHERE i.seq = c.seq
RETURNING i.seq, i.bot_id, i.channel, i.conversation, i.external_id, i.message, i.attempts,
          i.received_at
"""

_CLAIM = f"""
WITH c AS (
    SELECT i.seq FROM inbox i
    WHERE i.status IN ('pending', 'running')
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

# One named row, found by its key (a request leasing the message it just wrote): a
# separate statement, for a filter on the active rows would visit every index entry
# that finished rows left behind until vacuum removes them.
_CLAIM_ONE = f"""
WITH c AS (
    SELECT i.seq FROM inbox i
    WHERE i.seq = $1
      AND (i.status = 'pending' OR (i.status = 'running' AND i.lease_until < now()))
      {_CLAIMABLE}
    FOR UPDATE SKIP LOCKED
)
{_LEASE.replace("$3", "$2").replace("$4", "$3")}
"""

_EXTEND = """
UPDATE inbox SET lease_until = now() + $3 * interval '1 second'
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'running'
"""

_RETRY = """
UPDATE inbox SET status = 'pending', lease_token = NULL, lease_until = NULL, last_error = $3,
    available_at = now() + $4 * interval '1 second'
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'running'
"""

_FINISH = """
UPDATE inbox SET status = $3, lease_token = NULL, lease_until = NULL, last_error = $4,
    finished_at = now()
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'running'
"""

_STATUS = "SELECT status FROM inbox WHERE bot_id = $1 AND channel = $2 AND external_id = $3"

_COUNTS = """
SELECT count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'running'),
       (SELECT count(*) FROM inbox WHERE bot_id = $1 AND channel = $2 AND status = 'dead'),
       (SELECT max(received_at) FROM inbox WHERE bot_id = $1 AND channel = $2)
FROM inbox WHERE bot_id = $1 AND channel = $2 AND status IN ('pending', 'running')
"""

_OUTCOME = """
SELECT i.status, i.session_id::text, i.last_error,
       coalesce((SELECT json_agg(o.message ORDER BY o.seq) FROM outbox o
                 WHERE o.inbox_seq = i.seq AND o.channel = i.channel
                   AND o.conversation = i.conversation), '[]')::jsonb
FROM inbox i
WHERE i.bot_id = $1 AND i.channel = $2 AND i.external_id = $3
"""


class PostgresInbox:
    """:class:`storage.base.Inbox` on the ``inbox`` table.

    Concurrent :meth:`put` calls share one statement on ``connections``
    connections kept from the pool; :meth:`close` gives them back.
    """

    def __init__(self, pool: asyncpg.Pool, *, connections: int = 2) -> None:
        self._pool = pool
        self._db = PinnedConnections(pool, size=connections)
        # One message id never shares a batch with itself: its duplicate must see it.
        self._puts = Batcher(
            self._put_batch,
            key=lambda item: (item.bot_id, item.channel, item.external_id),
            max_in_flight=connections,
        )

    async def put(self, item: InboxItem) -> int | None:
        return await self._puts.submit(item)

    async def _put_batch(self, items: Sequence[InboxItem]) -> list[int | None]:
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
                }
                for index, item in enumerate(items)
            ]
        ).decode()
        with translate_errors:
            rows = await self._db.fetch(_PUT, batch)
        seqs: dict[int, int] = {row[0]: row[1] for row in rows}
        return [seqs.get(index) for index in range(len(items))]

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
            )
            for r in rows
        ]
        claims.sort(key=lambda c: c.seq)
        return claims

    async def extend(self, claim: Claim, *, lease: float) -> bool:
        with translate_errors:
            result: str = await self._pool.execute(_EXTEND, claim.seq, claim.token, lease)
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
