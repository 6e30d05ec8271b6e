"""The knowledge base as the turn uses it: searched for each question, kept up to date.

A session that chose collections with ``USE KB`` searches those; one that chose
none searches every collection of its bot (so a bot with a ``.gbkb`` folder
answers from it with no dialog code at all). A package's documents are indexed
when it loads and when it is reloaded, in the background: a turn never waits
for an ingestion, and only changed files are read again. A run that indexed or
removed anything tells the semantic cache, whose answers for that bot were given
from the knowledge base as it was (:meth:`pipeline.llm_cache.LLMCache.knowledge_changed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from pipeline.conversation import Knowledge, KnowledgePassage, KnowledgeQuery
from pipeline.kb.service import KnowledgeBase
from pipeline.llm_cache import LLMCache

log = logging.getLogger(__name__)


def knowledge_search(kb: KnowledgeBase, *, limit: int = 5) -> Knowledge:
    """The turn's ``knowledge`` callable over ``kb``."""

    async def search(query: KnowledgeQuery) -> Sequence[KnowledgePassage]:
        collections = query.collections or None
        return await kb.search(query.bot, query.question, collections=collections, limit=limit)

    return search


class PackageIngester:
    """Indexes bots' ``.gbkb`` folders in background tasks, one run per bot at a time; a
    run that changed a bot's knowledge base drops that bot's answers from ``llm_cache``."""

    def __init__(self, kb: KnowledgeBase, *, llm_cache: LLMCache | None = None) -> None:
        self._kb = kb
        self._llm_cache = llm_cache
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def ingest(self, bot: str, package_dir: Path) -> None:
        """Index what changed in ``package_dir`` soon; a run already going for ``bot`` ends
        first (the knowledge base runs one ingestion of a bot at a time)."""
        if not any(package_dir.glob("*.gbkb")):
            return
        previous = self._tasks.get(bot)
        task = asyncio.create_task(self._run(bot, package_dir, previous), name=f"kb-{bot}")
        self._tasks[bot] = task
        task.add_done_callback(lambda t: self._forget(bot, t))

    async def _run(self, bot: str, package_dir: Path, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            report = await self._kb.ingest(bot, package_dir)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kb: indexing bot %s failed; its search uses what was indexed", bot)
            return
        for name, reason in report.skipped:
            log.warning("kb: bot %s: %s skipped: %s", bot, name, reason)
        if report.indexed or report.removed:
            if self._llm_cache is not None:
                await self._llm_cache.knowledge_changed(bot)
            log.info(
                "kb: bot %s: %d files indexed, %d removed, %d unchanged, %d chunks in %.1f s",
                bot,
                report.indexed,
                report.removed,
                report.unchanged,
                report.chunks,
                report.seconds,
            )

    def _forget(self, bot: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(bot) is task:
            del self._tasks[bot]

    async def wait(self) -> None:
        """Until every ingestion started so far has ended."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop the ingestions (each file's rows are written whole; the next run goes on)."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
