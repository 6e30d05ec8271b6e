"""The ``kb_documents`` rows in PostgreSQL: one per ingested file of a bot's KB."""

from __future__ import annotations

import asyncpg

from storage.kb_base import DocumentStatus, KbDocument

_LIST = """
SELECT collection, source_path, content_hash, embedding_id, status, chunk_count, pages, error
FROM kb_documents WHERE bot_id = $1 AND source_path IS NOT NULL
    AND ($2::text IS NULL OR collection = $2)
ORDER BY collection, source_path
"""

_PUT = """
INSERT INTO kb_documents
    (bot_id, collection, source_path, content_hash, embedding_id, status, chunk_count,
     pages, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (bot_id, collection, source_path) DO UPDATE SET
    content_hash = excluded.content_hash, embedding_id = excluded.embedding_id,
    status = excluded.status, chunk_count = excluded.chunk_count, pages = excluded.pages,
    error = excluded.error, updated_at = now()
"""

_REMOVE = "DELETE FROM kb_documents WHERE bot_id = $1 AND collection = $2 AND source_path = $3"


class PostgresKbDocuments:
    """:class:`storage.kb_base.KbDocuments` on the process's asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list(self, bot: str, *, collection: str | None = None) -> list[KbDocument]:
        rows = await self._pool.fetch(_LIST, bot, collection)
        return [
            KbDocument(
                collection=r["collection"],
                source=r["source_path"],
                content_hash=r["content_hash"],
                embedding_id=r["embedding_id"] or "",
                status=DocumentStatus(r["status"]),
                chunk_count=r["chunk_count"],
                pages=r["pages"],
                error=r["error"],
            )
            for r in rows
        ]

    async def put(self, bot: str, document: KbDocument) -> None:
        await self._pool.execute(
            _PUT,
            bot,
            document.collection,
            document.source,
            document.content_hash,
            document.embedding_id,
            document.status.value,
            document.chunk_count,
            document.pages,
            document.error,
        )

    async def remove(self, bot: str, collection: str, source: str) -> None:
        await self._pool.execute(_REMOVE, bot, collection, source)
