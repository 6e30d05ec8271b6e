"""The knowledge base as one service: ingest a bot's package, list and search its collections.

The pipeline (``USE KB`` collections, answers with no LLM), the CLI
(``botserver kb ingest BOT``) and package loading call this class; it is
built once with the process's index and ``kb_documents`` store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path

import asyncpg

from pipeline.kb.bot_embedders import BotEmbedders, ConfigOf
from pipeline.kb.documents import ReadDocument
from pipeline.kb.embedders import Embedder
from pipeline.kb.ingest import (
    IngestReport,
    ProgressCallback,
    collections_out_of_step,
    embedding_id,
    find_kb_folder,
    index_document,
    ingest_bot,
    up_to_date,
)
from pipeline.kb.local_embedder import load_local_embedder
from pipeline.kb.retrieval import Passage, search_passages
from storage.kb_base import DocumentStatus, KbDocument, KbDocuments, KnowledgeIndex, SearchMode
from storage.kb_documents import PostgresKbDocuments
from storage.kb_open import open_knowledge_index

log = logging.getLogger(__name__)

#: Which embedder a bot's chunks and questions use (None: lexical only); see
#: :class:`pipeline.kb.bot_embedders.BotEmbedders`.
EmbedderFor = Callable[[str], Awaitable[Embedder | None]]


async def _lexical(bot: str) -> Embedder | None:
    return None


class KnowledgeBase:
    """Every bot's knowledge base over one index and one ``kb_documents`` store."""

    def __init__(
        self,
        index: KnowledgeIndex,
        documents: KbDocuments,
        *,
        embedder_for: EmbedderFor | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.index = index
        self._documents = documents
        self._embedder_for = embedder_for or _lexical
        self._executor = executor
        self._optimizing: asyncio.Task[None] | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    async def ingest(
        self, bot: str, package_dir: Path, *, progress: ProgressCallback | None = None
    ) -> IngestReport:
        """Index what changed in ``package_dir``'s ``.gbkb`` folder; one run per bot at a time.

        The search indexes are then rebuilt in the background (see :meth:`indexing`).
        """
        lock = self._locks.setdefault(bot, asyncio.Lock())
        async with lock:
            report = await ingest_bot(
                bot,
                find_kb_folder(package_dir),
                index=self.index,
                documents=self._documents,
                embedder=await self._embedder_for(bot),
                progress=progress,
                executor=self._executor,
            )
        if report.indexed or report.removed:
            self._optimize_soon()
        log.info(
            "kb: bot %r: %d indexed, %d unchanged, %d removed, %d skipped, %d chunks in %.1fs",
            bot,
            report.indexed,
            report.unchanged,
            report.removed,
            len(report.skipped),
            report.chunks,
            report.seconds,
        )
        return report

    # -- documents indexed one by one (crawled web pages, see pipeline.websites) ------------

    @property
    def executor(self) -> Executor | None:
        """Where the knowledge base's CPU work runs (None: the loop's default executor)."""
        return self._executor

    async def documents(self, bot: str, collection: str) -> list[KbDocument]:
        """The rows of one of ``bot``'s collections."""
        return await self._documents.list(bot, collection=collection)

    async def out_of_step(self, bot: str, collection: str, rows: Sequence[KbDocument]) -> bool:
        """Whether the index holds other chunks of ``collection`` than its rows count (the
        index was wiped or restored): then each document is indexed again."""
        stale = await collections_out_of_step(
            bot, self.index, {(r.collection, r.source): r for r in rows}
        )
        return collection in stale

    async def index_one(
        self,
        bot: str,
        collection: str,
        source: str,
        read: ReadDocument,
        digest: str,
        *,
        known: KbDocument | None = None,
    ) -> bool:
        """Index one document read from ``source``, unless ``known`` (its row) says the same
        text is indexed with the same embedder already; True when it was (re)indexed."""
        embedder = await self._embedder_for(bot)
        if known is not None and up_to_date(known, digest, embedding_id(embedder)):
            return False
        await index_document(
            bot,
            collection,
            source,
            read,
            digest,
            index=self.index,
            documents=self._documents,
            embedder=embedder,
            executor=self._executor,
        )
        return True

    async def remove_one(self, bot: str, collection: str, source: str) -> None:
        """Remove one document from the index and the rows."""
        await self.index.delete_source(bot, collection, source)
        await self._documents.remove(bot, collection, source)

    def changed(self) -> None:
        """Documents were indexed or removed one by one: rebuild the search indexes soon."""
        self._optimize_soon()

    async def collections(self, bot: str) -> list[str]:
        """The bot's collections that have indexed files, sorted."""
        rows = await self._documents.list(bot)
        return sorted({r.collection for r in rows if r.status is DocumentStatus.INDEXED})

    async def search(
        self,
        bot: str,
        question: str,
        *,
        collections: Sequence[str] | None = None,
        limit: int = 5,
        mode: SearchMode = SearchMode.HYBRID,
    ) -> list[Passage]:
        """The best passages for ``question`` in ``collections`` (all the bot's when None)."""
        chosen = list(collections) if collections is not None else await self.collections(bot)
        return await search_passages(
            self.index,
            bot,
            chosen,
            question,
            embedder=await self._embedder_for(bot),
            limit=limit,
            mode=mode,
        )

    async def indexing(self) -> None:
        """Wait for the background index build, if one runs (tests, benchmarks, shutdown)."""
        while self._optimizing is not None and not self._optimizing.done():
            await asyncio.shield(self._optimizing)

    async def close(self) -> None:
        """Let a running index build finish, then close the index (and the embeddings
        endpoints' clients)."""
        try:
            await self.indexing()
        finally:
            try:
                await self.index.close()
            finally:
                if isinstance(self._embedder_for, BotEmbedders):
                    await self._embedder_for.close()

    def _optimize_soon(self) -> None:
        if self._optimizing is not None and not self._optimizing.done():
            return  # the running build picks up what this run wrote, or the next run's will
        self._optimizing = asyncio.create_task(self._optimize(), name="kb-optimize")

    async def _optimize(self) -> None:
        try:
            await self.index.optimize()
        except Exception:  # a failed build leaves searches correct, only slower
            log.exception("kb: building the search index failed")


async def open_knowledge_base(
    pool: asyncpg.Pool,
    data_dir: Path,
    *,
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
    local_model: bool = True,
    config_of: ConfigOf | None = None,
    executor: Executor | None = None,
) -> KnowledgeBase:
    """The process's knowledge base: its index (Qdrant server or embedded), its rows in
    ``pool``'s database, and its embedders: a bot's own embeddings endpoint when its
    config (from ``config_of``) names one, else the packaged local model when installed."""
    index = await open_knowledge_index(
        data_dir, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key
    )
    local = load_local_embedder(executor=executor) if local_model else None
    embedders = BotEmbedders(local, config_of or (lambda bot: None))
    return KnowledgeBase(
        index, PostgresKbDocuments(pool), embedder_for=embedders, executor=executor
    )
