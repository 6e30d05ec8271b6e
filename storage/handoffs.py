"""Handoffs on PostgreSQL: the ``handoffs`` table, with the history and outbox rows each
change writes in its own transaction.

Every change is one conditional ``UPDATE … RETURNING`` (``take``: only a waiting row;
``say``: only the holder's; ``release``: the holder's, or a waiting one), so that the row
lock decides between concurrent callers on any instance: the loser's statement matches
nothing and it reads the row as the winner left it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from storage.handoff_base import (
    Change,
    Delivered,
    DeliveryFor,
    EventFor,
    Handoff,
    ReleaseMode,
)
from storage.postgres import as_uuid, new_id, translate_errors

_COLUMNS = """
h.id, h.session_id::text, h.bot_id, h.channel, h.conversation, h.status, h.attendant,
h.department, h.priority, h.reason, h.context, h.agent_id, h.agent_name, h.requested_at,
h.taken_at, h.agent_active_at, h.resolved_at, h.resolved_by, h.release_mode
"""

_LATEST = f"SELECT {_COLUMNS} FROM handoffs h WHERE h.session_id = $1 ORDER BY h.id DESC LIMIT 1"

# The open one first (at most one), else the newest.
_GET = f"""
SELECT {_COLUMNS} FROM handoffs h WHERE h.bot_id = $1 AND h.session_id = $2
ORDER BY h.status IN ('waiting', 'active') DESC, h.id DESC LIMIT 1
"""

_OPEN_ONE = f"""
SELECT {_COLUMNS} FROM handoffs h
WHERE h.bot_id = $1 AND h.session_id = $2 AND h.status IN ('waiting', 'active')
"""

_LIST_OPEN = f"""
SELECT {_COLUMNS}, m.content, m.created_at FROM handoffs h
LEFT JOIN LATERAL (
    SELECT content, created_at FROM message_history
    WHERE session_id = h.session_id AND role = 'user'
    ORDER BY seq DESC LIMIT 1
) m ON true
WHERE h.bot_id = $1 AND h.status IN ('waiting', 'active')
ORDER BY h.status = 'active', h.priority DESC, h.requested_at, h.id
LIMIT 1000
"""

_POSITION = """
SELECT count(*) + 1 FROM handoffs
WHERE bot_id = $1 AND status = 'waiting' AND priority >= $2
"""

_TAKE = f"""
UPDATE handoffs h SET status = 'active', agent_id = $3, agent_name = $4, taken_at = now(),
    agent_active_at = now()
WHERE h.bot_id = $1 AND h.session_id = $2 AND h.status = 'waiting'
RETURNING {_COLUMNS}
"""

_SAY = f"""
UPDATE handoffs h SET agent_active_at = now()
WHERE h.bot_id = $1 AND h.session_id = $2 AND h.status = 'active'
  AND ($3::text IS NULL OR h.agent_id = $3)
RETURNING {_COLUMNS}
"""

_RELEASE = f"""
UPDATE handoffs h SET status = 'resolved', resolved_at = now(), resolved_by = $4,
    release_mode = $5
WHERE h.bot_id = $1 AND h.session_id = $2 AND h.status IN ('waiting', 'active')
  AND ($3::text IS NULL OR h.status = 'waiting' OR h.agent_id = $3)
RETURNING {_COLUMNS}
"""

_EXPIRE = f"""
UPDATE handoffs h SET status = 'abandoned', resolved_at = now(), resolved_by = 'timeout',
    release_mode = $3
WHERE h.bot_id = $1 AND h.status IN ('waiting', 'active')
  AND h.agent_active_at < now() - $2 * interval '1 second'
RETURNING {_COLUMNS}
"""

_HISTORY = """
INSERT INTO message_history (id, session_id, role, content, tokens_used)
VALUES ($1, $2, $3, $4, $5)
RETURNING seq, created_at
"""

_OUTBOX = """
INSERT INTO outbox (bot_id, channel, conversation, message, status, sent_at)
VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN 'sent' ELSE 'pending' END, CASE WHEN $5 THEN now() END)
RETURNING seq
"""


def _handoff(row: Any, *, listed: bool = False) -> Handoff:
    return Handoff(
        id=row[0],
        session_id=row[1],
        bot_id=row[2],
        channel=row[3],
        conversation=row[4],
        status=row[5],
        attendant=row[6],
        department=row[7],
        priority=row[8],
        reason=row[9],
        context=row[10],
        agent_id=row[11],
        agent_name=row[12],
        requested_at=row[13],
        taken_at=row[14],
        agent_active_at=row[15],
        resolved_at=row[16],
        resolved_by=row[17],
        release_mode=row[18],
        last_message=row[19] if listed else None,
        last_message_at=row[20] if listed else None,
    )


class PostgresHandoffStore:
    """:class:`storage.handoff_base.HandoffStore` on ``handoffs``, ``message_history`` and
    ``outbox``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def latest(self, session_id: str) -> Handoff | None:
        key = as_uuid(session_id)
        if key is None:
            return None
        with translate_errors:
            row = await self._pool.fetchrow(_LATEST, key)
        return None if row is None else _handoff(row)

    async def get(self, bot_id: str, session_id: str) -> Handoff | None:
        key = as_uuid(session_id)
        if key is None:
            return None
        with translate_errors:
            row = await self._pool.fetchrow(_GET, bot_id, key)
        return None if row is None else _handoff(row)

    async def open(self, bot_id: str) -> list[Handoff]:
        with translate_errors:
            rows = await self._pool.fetch(_LIST_OPEN, bot_id)
        return [_handoff(row, listed=True) for row in rows]

    async def queue_position(self, bot_id: str, priority: int) -> int:
        with translate_errors:
            position: int = await self._pool.fetchval(_POSITION, bot_id, priority)
        return position

    async def take(
        self, bot_id: str, session_id: str, agent_id: str, agent_name: str, *, event: EventFor
    ) -> Change | None:
        key = as_uuid(session_id)
        if key is None:
            return None
        with translate_errors:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(_TAKE, bot_id, key, agent_id, agent_name)
                if row is None:
                    return await self._unchanged(conn, bot_id, key)
                handoff = _handoff(row)
                await self._event(conn, handoff, event)
        return Change(handoff)

    async def say(
        self,
        bot_id: str,
        session_id: str,
        agent_id: str | None,
        delivery: DeliveryFor,
    ) -> Change | None:
        key = as_uuid(session_id)
        if key is None:
            return None
        with translate_errors:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(_SAY, bot_id, key, agent_id)
                if row is None:
                    return await self._unchanged(conn, bot_id, key)
                handoff = _handoff(row)
                delivered = await self._deliver(conn, handoff, delivery)
        return Change(handoff, delivered=delivered)

    async def release(
        self,
        bot_id: str,
        session_id: str,
        agent_id: str | None,
        mode: ReleaseMode,
        *,
        event: EventFor,
        delivery: DeliveryFor,
    ) -> Change | None:
        key = as_uuid(session_id)
        if key is None:
            return None
        with translate_errors:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    _RELEASE, bot_id, key, agent_id, agent_id or "admin", mode
                )
                if row is None:
                    return await self._unchanged(conn, bot_id, key)
                handoff = _handoff(row)
                delivered = await self._deliver(conn, handoff, delivery)
                await self._event(conn, handoff, event)
        return Change(handoff, delivered=delivered)

    async def expire(
        self,
        bot_id: str,
        *,
        silence: float,
        mode: ReleaseMode,
        event: EventFor,
        delivery: DeliveryFor,
    ) -> Sequence[Change]:
        changes: list[Change] = []
        with translate_errors:
            async with self._pool.acquire() as conn, conn.transaction():
                for row in await conn.fetch(_EXPIRE, bot_id, silence, mode):
                    handoff = _handoff(row)
                    delivered = await self._deliver(conn, handoff, delivery)
                    await self._event(conn, handoff, event)
                    changes.append(Change(handoff, delivered=delivered))
        return changes

    @staticmethod
    async def _unchanged(conn: asyncpg.Connection, bot_id: str, key: str) -> Change | None:
        row = await conn.fetchrow(_OPEN_ONE, bot_id, key)
        return None if row is None else Change(_handoff(row), changed=False)

    @staticmethod
    async def _event(conn: asyncpg.Connection, handoff: Handoff, event: EventFor) -> None:
        item = event(handoff)
        if item is not None:
            await conn.execute(
                _OUTBOX,
                handoff.bot_id,
                item.channel,
                item.conversation,
                item.message,
                item.delivered,
            )

    @staticmethod
    async def _deliver(
        conn: asyncpg.Connection, handoff: Handoff, delivery: DeliveryFor
    ) -> Delivered | None:
        item = delivery(handoff)
        if item is None:
            return None
        entry, out = item.entry, item.outbox
        history = await conn.fetchrow(
            _HISTORY, new_id(), handoff.session_id, entry.role, entry.content, entry.tokens_used
        )
        outbox_id: int = await conn.fetchval(
            _OUTBOX, handoff.bot_id, out.channel, out.conversation, out.message, out.delivered
        )
        return Delivered(history_id=history[0], at=history[1], outbox_id=outbox_id)
