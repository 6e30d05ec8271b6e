"""Fixtures of the knowledge-base tests.

``kb_index`` runs each test once per index backend: the embedded default
(Qdrant Edge, in a temporary folder) and qdrant-client's local mode, the
stand-in for a Qdrant server (no registry package ships Qdrant's server, so
none is started here); with ``TEST_QDRANT_URL`` set, also against that
server. ``kb_pool`` is a migrated asyncpg pool on the test machine's
PostgreSQL (``TEST_DATABASE_URL``), in a schema of its own dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from storage.kb_base import KnowledgeIndex
from storage.kb_edge import EdgeIndex
from storage.kb_qdrant import QdrantIndex
from storage.migrate import migrate
from storage.postgres import create_pool, quote_ident

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
QDRANT_URL = os.environ.get("TEST_QDRANT_URL", "")

BACKENDS = ["edge", "qdrant-local", *(["qdrant-server"] if QDRANT_URL else [])]


async def open_index(kind: str, folder: Path) -> KnowledgeIndex:
    """A new, empty index of ``kind`` (``folder`` holds the embedded one's files)."""
    if kind == "edge":
        return await EdgeIndex.open(folder / "edge")
    if kind == "qdrant-local":
        return QdrantIndex.connect(":memory:")
    return QdrantIndex.connect(QDRANT_URL, prefix=f"test_{uuid.uuid4().hex[:8]}_")


@pytest.fixture(params=BACKENDS)
async def kb_index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KnowledgeIndex]:
    index = await open_index(request.param, tmp_path)
    yield index
    await index.close()


@pytest.fixture(scope="session")
async def kb_pool() -> AsyncIterator[asyncpg.Pool]:
    schema = f"test_kb_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as e:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable ({e}); start it first")
    try:
        await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
    finally:
        await conn.close()
    pool = await create_pool(POSTGRES_URL, schema=schema, min_size=1, max_size=4)
    await migrate(pool)
    yield pool
    await pool.close()
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()
