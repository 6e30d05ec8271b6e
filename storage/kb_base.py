"""The knowledge-base index contract: chunks of a bot's documents, searched
lexically (BM25), densely (embeddings) or both fused by reciprocal rank.

Every chunk is scoped by bot, collection (a ``.gbkb/<collection>/`` folder)
and source (the file's path inside its collection); a search never returns
another bot's chunks, nor a collection it was not asked for.

Backends: :mod:`storage.kb_edge` (the embedded default, an in-process Qdrant
engine under the data folder) and :mod:`storage.kb_qdrant` (a Qdrant server
when ``QDRANT_URL`` is set). Both pass ``tests/kb/test_index_contract.py``.

:class:`KbDocuments` tracks which files are indexed (the ``kb_documents``
rows), so ingestion re-reads only what changed and resumes after a crash.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from storage.base import StorageError

#: Reciprocal rank fusion's constant: a hit at rank r (from 1) scores 1/(k + r).
RRF_K = 60

_POINT_NAMESPACE = uuid.UUID("5b0c1f0e-7d1e-4c4b-9a57-2f7f7c1e0b1d")


class KnowledgeIndexError(StorageError):
    """The index could not be read or written."""


class SearchMode(StrEnum):
    """How a query ranks chunks."""

    LEXICAL = "lexical"
    DENSE = "dense"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class VectorSpace:
    """An embedding model's vector space: vectors of different spaces never mix."""

    model: str
    dim: int

    @property
    def name(self) -> str:
        """The vector's name in the index, e.g. ``dense_all_minilm_l6_v2_384``."""
        slug = re.sub(r"[^a-z0-9]+", "_", self.model.lower()).strip("_")[:48]
        return f"dense_{slug}_{self.dim}"


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """One chunk to index: its text, where it came from, and its embedding if any."""

    ordinal: int
    text: str
    heading: str = ""
    page: int | None = None
    vector: Sequence[float] | None = None


@dataclass(frozen=True, slots=True)
class KbQuery:
    """A search: ``text`` always (lexical), ``vector`` in ``space`` for dense ranking.

    ``HYBRID`` without a vector ranks lexically; ``DENSE`` without one finds nothing.
    """

    text: str
    limit: int = 5
    mode: SearchMode = SearchMode.HYBRID
    vector: Sequence[float] | None = None
    space: VectorSpace | None = None


@dataclass(frozen=True, slots=True)
class KbHit:
    """A chunk found by a search, with its provenance and score (higher is better)."""

    collection: str
    source: str
    ordinal: int
    text: str
    heading: str
    page: int | None
    score: float


def searchable_text(chunk: IndexedChunk) -> str:
    """What is ranked for a chunk, lexically and densely: its heading path, then its text."""
    return f"{chunk.heading}\n\n{chunk.text}" if chunk.heading else chunk.text


def point_id(bot: str, collection: str, source: str, ordinal: int) -> str:
    """A chunk's stable id: re-indexing a file overwrites its chunks in place."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{bot}\x00{collection}\x00{source}\x00{ordinal}"))


def hit_from_payload(payload: dict[str, object], score: float) -> KbHit:
    """A :class:`KbHit` from a stored chunk's payload (both Qdrant backends store the same)."""
    page = payload.get("page")
    return KbHit(
        collection=str(payload["collection"]),
        source=str(payload["source"]),
        ordinal=int(payload["ordinal"]),  # type: ignore[call-overload]
        text=str(payload["text"]),
        heading=str(payload.get("heading") or ""),
        page=int(page) if isinstance(page, int) else None,
        score=float(score),
    )


def chunk_payload(bot: str, collection: str, source: str, chunk: IndexedChunk) -> dict[str, object]:
    """What a backend stores beside a chunk's vectors."""
    return {
        "bot": bot,
        "collection": collection,
        "source": source,
        "ordinal": chunk.ordinal,
        "text": chunk.text,
        "heading": chunk.heading,
        "page": chunk.page,
    }


class KnowledgeIndex(Protocol):
    """Chunks of every bot's knowledge base, searchable by bot and collection."""

    async def replace_source(
        self,
        bot: str,
        collection: str,
        source: str,
        chunks: Sequence[IndexedChunk],
        *,
        space: VectorSpace | None = None,
    ) -> None:
        """Make ``chunks`` the whole content of one file; its older chunks go.

        Vectors, when given, belong to ``space``. Re-running it with the same
        chunks is harmless (ingestion resumes by doing so).
        """
        ...

    async def delete_source(self, bot: str, collection: str, source: str) -> None:
        """Remove every chunk of one file (a file deleted from the package)."""
        ...

    async def search(self, bot: str, collections: Sequence[str], query: KbQuery) -> list[KbHit]:
        """The best ``query.limit`` chunks of ``bot`` in ``collections``, best first."""
        ...

    async def count(self, bot: str, collection: str | None = None) -> int:
        """How many chunks ``bot`` has indexed (in one collection, or in all)."""
        ...

    async def optimize(self) -> None:
        """Build the search indexes for what was written. Slow: run it in the background."""
        ...

    async def close(self) -> None:
        """Flush and release the index."""
        ...


class DocumentStatus(StrEnum):
    """Where a file's ingestion stands."""

    INDEXING = "indexing"  # started; a crash leaves it so and the next run redoes it
    INDEXED = "indexed"
    SKIPPED = "skipped"  # unreadable (corrupt, encrypted): retried only when it changes


@dataclass(frozen=True, slots=True)
class KbDocument:
    """One file of a bot's knowledge base as last ingested (a ``kb_documents`` row); a
    crawled web page's ``source`` is its URL."""

    collection: str
    source: str
    content_hash: str
    embedding_id: str
    status: DocumentStatus
    chunk_count: int = 0
    pages: int | None = None
    error: str | None = None


class KbDocuments(Protocol):
    """The ``kb_documents`` rows: which files of which bot are indexed, at which hash."""

    async def list(self, bot: str, *, collection: str | None = None) -> list[KbDocument]:
        """Every tracked file of ``bot`` (of one of its collections when given)."""
        ...

    async def put(self, bot: str, document: KbDocument) -> None:
        """Insert or replace the row of ``(bot, document.collection, document.source)``."""
        ...

    async def remove(self, bot: str, collection: str, source: str) -> None:
        """Forget one file."""
        ...
