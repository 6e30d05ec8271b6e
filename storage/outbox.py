"""The outbox on PostgreSQL: committed replies, sent in order, each part recorded.

Rows are written by the statement that commits their turn (see
:mod:`storage.postgres`). The delivery worker leases the oldest unsent row of
each conversation, marks a part as on its way before sending it and records
the provider's id once it is confirmed. After a crash, a row leased with no
part on its way is handed out again and goes on from the next unconfirmed
part; a row with a part on its way may or may not have reached the user, and
becomes ``unknown`` for the operator instead of being sent twice.

Also here: the conversation windows (when each user last wrote), the
providers' delivery reports, and rows queued with no turn (proactive messages).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from storage.base import OutboxRow, StorageError
from storage.batching import Batcher
from storage.postgres import translate_errors

# Whether a later reply of the row's conversation waits behind it.
_LATER = """EXISTS (SELECT 1 FROM outbox n
               WHERE n.bot_id = o.bot_id AND n.channel = o.channel
                 AND n.conversation = o.conversation
                 AND n.status IN ('pending', 'sending') AND n.seq > o.seq)"""

_CLAIM = """
WITH stale AS (
    UPDATE outbox SET status = 'unknown', lease_token = NULL, lease_until = NULL,
        last_error = 'stopped while a part was on its way: it may or may not have arrived'
    WHERE status = 'sending' AND in_flight AND lease_until < now()
    RETURNING seq
), c AS (
    SELECT o.seq FROM outbox o
    WHERE ((o.status = 'pending' AND o.available_at <= now())
           OR (o.status = 'sending' AND NOT o.in_flight AND o.lease_until < now()))
      AND NOT EXISTS (
          SELECT 1 FROM outbox p
          WHERE p.bot_id = o.bot_id AND p.channel = o.channel
            AND p.conversation = o.conversation
            AND p.status IN ('pending', 'sending') AND p.seq < o.seq)
    ORDER BY o.seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET status = 'sending', lease_token = $3::uuid, attempts = o.attempts + 1,
    lease_until = now() + $2 * interval '1 second'
FROM c WHERE o.seq = c.seq
RETURNING o.seq, o.bot_id, o.channel, o.conversation, o.message, o.parts_sent,
          o.provider_ids, o.attempts, o.created_at
"""

# A record with few others to share its statement takes one of its own kind: PostgreSQL
# plans the shared statement anew each time (~300 us, whatever the rows), against ~110 us
# to plan and run each of these; from 4 records on, sharing costs it less.
_SHARED_FROM = 4
_START_PART = """
UPDATE outbox SET in_flight = $4, lease_until = now() + $3 * interval '1 second'
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'sending'
"""

_PART_SENT = """
UPDATE outbox SET in_flight = false, parts_sent = parts_sent + 1,
    provider_ids = provider_ids || jsonb_build_array($3::text)
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'sending'
"""

# A reply's last record says whether a later reply of its conversation waits (see
# DeliveryWorker._done).
_LAST_PART_SENT = f"""
UPDATE outbox o SET status = 'sent', in_flight = false, lease_token = NULL, lease_until = NULL,
    sent_at = now(), parts_sent = parts_sent + 1,
    provider_ids = provider_ids || jsonb_build_array($3::text)
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'sending'
RETURNING {_LATER}
"""

_SENT = """
UPDATE outbox SET status = 'sent', in_flight = false, lease_token = NULL, lease_until = NULL,
    sent_at = now()
WHERE seq = $1 AND lease_token = $2::uuid
"""

# A part's record, every kind in one statement shared by concurrent sends (see
# storage/batching.py): a part marked on its way (``lease`` set), a part confirmed (``pid``),
# the row sent (``done``), or a last part confirmed and its row sent at once. One round trip
# and one commit per batch instead of three of each per reply. ``seq = ANY($1)`` lets the
# planner find the rows by key: it sizes an array parameter right, where it would guess
# at unnest's record set.
_RECORD = f"""
UPDATE outbox o SET
    in_flight = v.in_flight,
    lease_until = CASE WHEN v.done THEN NULL
                       WHEN v.lease IS NOT NULL THEN now() + v.lease * interval '1 second'
                       ELSE o.lease_until END,
    parts_sent = o.parts_sent + CASE WHEN v.pid IS NULL THEN 0 ELSE 1 END,
    provider_ids = CASE WHEN v.pid IS NULL THEN o.provider_ids
                        ELSE o.provider_ids || jsonb_build_array(v.pid) END,
    status = CASE WHEN v.done THEN 'sent' ELSE o.status END,
    lease_token = CASE WHEN v.done THEN NULL ELSE o.lease_token END,
    sent_at = CASE WHEN v.done THEN now() ELSE o.sent_at END
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::bool[], $5::text[], $6::bool[])
    AS v(seq, token, lease, in_flight, pid, done)
WHERE o.seq = ANY($1::bigint[]) AND o.seq = v.seq AND o.lease_token = v.token::uuid
  AND (o.status = 'sending' OR (v.done AND v.pid IS NULL))
RETURNING o.seq, v.done AND {_LATER}
"""

_BUSY = """
SELECT EXISTS (SELECT 1 FROM outbox
               WHERE bot_id = $1 AND channel = $2 AND conversation = $3
                 AND status IN ('pending', 'sending'))
"""

_NOTE = """
UPDATE outbox SET message = message || $3::jsonb
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'sending'
"""

_RETRY = """
UPDATE outbox SET status = 'pending', in_flight = false, lease_token = NULL, lease_until = NULL,
    last_error = $3, available_at = now() + $4 * interval '1 second'
WHERE seq = $1 AND lease_token = $2::uuid AND status = 'sending'
"""

_PARK = """
UPDATE outbox SET status = $3, in_flight = false, lease_token = NULL, lease_until = NULL,
    last_error = $4
WHERE seq = $1 AND lease_token = $2::uuid
"""

_PARKED = """
SELECT count(*) FROM outbox WHERE bot_id = $1 AND channel = $2 AND status IN ('dead', 'unknown')
"""

_REPORT = """
INSERT INTO delivery_reports (bot_id, channel, provider_id, status, error_code, error_message,
                              reported_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

# Reports arrive out of order (read before delivered): the furthest one wins.
_DELIVERY_STATUS = """
SELECT status FROM delivery_reports
WHERE bot_id = $1 AND channel = $2 AND provider_id = $3
ORDER BY CASE status WHEN 'failed' THEN 6 WHEN 'undelivered' THEN 6 WHEN 'read' THEN 5
                     WHEN 'delivered' THEN 4 WHEN 'sent' THEN 3 WHEN 'queued' THEN 2
                     ELSE 1 END DESC, id DESC
LIMIT 1
"""

_LAST_INBOUND = """
SELECT last_inbound_at FROM conversation_windows
WHERE bot_id = $1 AND channel = $2 AND conversation = $3
  AND (closed_at IS NULL OR closed_at < last_inbound_at)
"""

_CLOSE_WINDOW = """
UPDATE conversation_windows SET closed_at = now()
WHERE bot_id = $1 AND channel = $2 AND conversation = $3
"""


@dataclass(frozen=True, slots=True)
class _Record:
    """One record of a leased row: see :data:`_RECORD`."""

    seq: int
    token: str
    lease: float | None  # a part marked on its way, the lease renewed for this long
    in_flight: bool
    provider_id: str | None  # a part confirmed
    done: bool = False  # the row sent


class _Recorded(NamedTuple):
    matched: bool  # the lease was still held
    later: bool  # (the row sent) a later reply of its conversation waits


class PostgresOutbox:
    """:class:`storage.base.Outbox` on the ``outbox`` and ``delivery_reports`` tables."""

    def __init__(self, pool: asyncpg.Pool, *, max_in_flight: int = 2) -> None:
        self._pool = pool
        # The records of concurrent sends share a statement; one row's records never share
        # one, nor run in two at once: they land in the order they were made.
        self._records: Batcher[_Record, _Recorded] = Batcher(
            self._record_batch, key=lambda record: record.seq, max_in_flight=max_in_flight
        )

    async def claim(self, *, limit: int, lease: float) -> list[OutboxRow]:
        token = str(uuid.uuid4())
        with translate_errors:
            rows = await self._pool.fetch(_CLAIM, limit, lease, token)
        claimed = [
            OutboxRow(
                seq=r[0],
                token=token,
                bot_id=r[1],
                channel=r[2],
                conversation=r[3],
                message=r[4],
                parts_sent=r[5],
                provider_ids=tuple(r[6]),
                attempts=r[7],
                created_at=r[8],
            )
            for r in rows
        ]
        claimed.sort(key=lambda row: row.seq)
        return claimed

    async def start_part(self, row: OutboxRow, *, lease: float, in_flight: bool = True) -> bool:
        record = _Record(row.seq, row.token, lease, in_flight, None)
        return (await self._records.submit(record)).matched

    async def busy(self, bot_id: str, channel: str, conversation: str) -> bool:
        with translate_errors:
            busy: bool = await self._pool.fetchval(_BUSY, bot_id, channel, conversation)
        return busy

    async def part_sent(self, row: OutboxRow, provider_id: str, *, done: bool = False) -> OutboxRow:
        record = _Record(row.seq, row.token, None, False, provider_id, done)
        recorded = await self._records.submit(record)
        return dataclasses.replace(
            row,
            parts_sent=row.parts_sent + 1,
            provider_ids=(*row.provider_ids, provider_id),
            has_next=recorded.later if done else row.has_next,
        )

    async def note(self, row: OutboxRow, fields: dict[str, Any]) -> None:
        with translate_errors:
            await self._pool.execute(_NOTE, row.seq, row.token, fields)

    async def sent(self, row: OutboxRow) -> None:
        await self._records.submit(_Record(row.seq, row.token, None, False, None, True))

    async def _record_batch(self, records: Sequence[_Record]) -> list[_Recorded | BaseException]:
        if len(records) < _SHARED_FROM:
            each = (self._record_one(r) for r in records)
            return list(await asyncio.gather(*each, return_exceptions=True))
        with translate_errors:
            rows = await self._pool.fetch(
                _RECORD,
                [r.seq for r in records],
                [r.token for r in records],
                [r.lease for r in records],
                [r.in_flight for r in records],
                [r.provider_id for r in records],
                [r.done for r in records],
            )
        later = {row[0]: row[1] for row in rows}
        recorded: list[_Recorded | BaseException] = [
            _Recorded(r.seq in later, bool(later.get(r.seq))) for r in records
        ]
        return recorded

    async def _record_one(self, r: _Record) -> _Recorded:
        with translate_errors:
            if r.lease is not None:
                result = await self._pool.execute(_START_PART, r.seq, r.token, r.lease, r.in_flight)
            elif r.provider_id is None:
                result = await self._pool.execute(_SENT, r.seq, r.token)
            elif not r.done:
                result = await self._pool.execute(_PART_SENT, r.seq, r.token, r.provider_id)
            else:
                row = await self._pool.fetchrow(_LAST_PART_SENT, r.seq, r.token, r.provider_id)
                return _Recorded(row is not None, row is not None and bool(row[0]))
        return _Recorded(str(result).endswith(" 1"), False)

    async def retry(self, row: OutboxRow, *, delay: float, error: str) -> None:
        with translate_errors:
            await self._pool.execute(_RETRY, row.seq, row.token, error, delay)

    async def park(self, row: OutboxRow, *, status: str, error: str) -> None:
        if status not in ("dead", "unknown"):
            raise ValueError(f"a parked reply is dead or unknown, not {status!r}")
        with translate_errors:
            await self._pool.execute(_PARK, row.seq, row.token, status, error)

    async def parked(self, bot_id: str, channel: str) -> int:
        with translate_errors:
            count: int = await self._pool.fetchval(_PARKED, bot_id, channel)
        return count

    async def report(
        self,
        bot_id: str,
        channel: str,
        provider_id: str,
        status: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        at: datetime | None = None,
    ) -> None:
        with translate_errors:
            await self._pool.execute(
                _REPORT, bot_id, channel, provider_id, status, error_code, error_message, at
            )

    async def delivery_status(self, bot_id: str, channel: str, provider_id: str) -> str | None:
        with translate_errors:
            status: str | None = await self._pool.fetchval(
                _DELIVERY_STATUS, bot_id, channel, provider_id
            )
        return status


class PostgresConversationWindows:
    """:class:`storage.base.ConversationWindows` on ``conversation_windows`` (moved by the
    inbox's puts)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def last_inbound(self, bot_id: str, channel: str, conversation: str) -> datetime | None:
        with translate_errors:
            at: datetime | None = await self._pool.fetchval(
                _LAST_INBOUND, bot_id, channel, conversation
            )
        return at

    async def close_window(self, bot_id: str, channel: str, conversation: str) -> None:
        with translate_errors:
            await self._pool.execute(_CLOSE_WINDOW, bot_id, channel, conversation)


_ENQUEUE = """
INSERT INTO outbox (bot_id, channel, conversation, message, idempotency_key)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (bot_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING seq
"""

_BY_KEY = "SELECT seq FROM outbox WHERE bot_id = $1 AND idempotency_key = $2"

# The channel of the user's most recently used session among those that can be sent to
# (a session's user is the conversation it belongs to: the chat, the phone number).
_LAST_CHANNEL = """
SELECT channel FROM user_sessions
WHERE user_id = $2 AND bot_id = $1 AND channel = ANY($3::text[])
ORDER BY updated_at DESC
LIMIT 1
"""


class PostgresProactiveOutbox:
    """Outbox rows with no turn behind them (proactive messages), and where a user was last
    seen. The rows are the delivery worker's like any reply: paced, retried, parked."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def enqueue(
        self,
        bot_id: str,
        channel: str,
        conversation: str,
        message: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> tuple[int, bool]:
        """Queue one message; its outbox id, and ``False`` when ``idempotency_key`` named a
        row queued before (whose id it is then)."""
        with translate_errors:
            async with self._pool.acquire() as conn:
                seq: int | None = await conn.fetchval(
                    _ENQUEUE, bot_id, channel, conversation, message, idempotency_key
                )
                if seq is not None:
                    return seq, True
                existing: int | None = await conn.fetchval(_BY_KEY, bot_id, idempotency_key)
        if existing is None:  # deleted between the two statements: nothing to answer with
            raise StorageError(f"outbox row of idempotency key {idempotency_key!r} vanished")
        return existing, False

    async def last_channel(self, bot_id: str, user_id: str, channels: Sequence[str]) -> str | None:
        """The channel among ``channels`` on which ``user_id`` last talked to the bot."""
        with translate_errors:
            channel: str | None = await self._pool.fetchval(
                _LAST_CHANNEL, bot_id, user_id, list(channels)
            )
        return channel
