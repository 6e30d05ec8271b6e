""":class:`storage.base.MediaRecords` on PostgreSQL (``media_objects``)."""

from __future__ import annotations

from typing import Any

import asyncpg

from storage.base import MediaRecord, StorageError
from storage.postgres import translate_errors

_COLUMNS = (
    "bot_id, channel, message_id, position, user_id, kind, blob_key, content_type, size,"
    " sha256, filename, created_at"
)

_FIND = f"""
SELECT {_COLUMNS} FROM media_objects
WHERE bot_id = $1 AND channel = $2 AND message_id = $3
ORDER BY position
"""

# An earlier record of the same position wins: the key it names holds the bytes a
# first run of the turn stored, and a second run writes the same key anyway.
_ADD = f"""
WITH new AS (
    INSERT INTO media_objects (
        bot_id, channel, message_id, position, user_id, kind, blob_key, content_type, size,
        sha256, filename)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (bot_id, channel, message_id, position) DO NOTHING
    RETURNING {_COLUMNS}
)
SELECT * FROM new
UNION ALL
SELECT {_COLUMNS} FROM media_objects
WHERE bot_id = $1 AND channel = $2 AND message_id = $3 AND position = $4
  AND NOT EXISTS (SELECT 1 FROM new)
"""

_OF_USER = f"""
SELECT {_COLUMNS} FROM media_objects
WHERE bot_id = $1 AND channel = $2 AND user_id = $3
ORDER BY created_at, message_id, position
LIMIT $4
"""


class PostgresMediaRecords:
    """Stored attachments, one row per (bot, channel, message id, position)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, bot_id: str, channel: str, message_id: str) -> list[MediaRecord]:
        with translate_errors:
            rows = await self._pool.fetch(_FIND, bot_id, channel, message_id)
        return [_record(row) for row in rows]

    async def add(self, record: MediaRecord) -> MediaRecord:
        for _ in range(3):
            row = await self._add(record)
            if row is not None:
                return _record(row)
            # A concurrent add of the same position committed after this statement's
            # snapshot was taken: its row is visible to the next statement.
        raise StorageError(f"media record of {record.message_id!r} vanished while being added")

    async def _add(self, record: MediaRecord) -> Any:
        with translate_errors:
            return await self._pool.fetchrow(
                _ADD,
                record.bot_id,
                record.channel,
                record.message_id,
                record.position,
                record.user_id,
                record.kind,
                record.key,
                record.content_type,
                record.size,
                record.sha256,
                record.filename,
            )

    async def of_user(
        self, bot_id: str, channel: str, user_id: str, *, limit: int = 100
    ) -> list[MediaRecord]:
        with translate_errors:
            rows = await self._pool.fetch(_OF_USER, bot_id, channel, user_id, limit)
        return [_record(row) for row in rows]


def _record(row: Any) -> MediaRecord:
    return MediaRecord(
        bot_id=row[0],
        channel=row[1],
        message_id=row[2],
        position=row[3],
        user_id=row[4],
        kind=row[5],
        key=row[6],
        content_type=row[7],
        size=row[8],
        sha256=row[9],
        filename=row[10],
        created_at=row[11],
    )
