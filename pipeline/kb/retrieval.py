"""Search a bot's knowledge base: lexical always, dense too when it has an embedder.

Hybrid is the default: the index fuses the BM25 and the embedding rankings
by reciprocal rank. Without an embedder, or when embedding the question
fails, the search is lexical and still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.kb.embedders import Embedder, EmbeddingFailed
from pipeline.kb.web_urls import is_web_source
from storage.kb_base import KbHit, KbQuery, KnowledgeIndex, SearchMode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Passage:
    """A found chunk, ready to quote with its source."""

    text: str
    collection: str
    source: str
    heading: str
    page: int | None
    score: float

    @property
    def citation(self) -> str:
        """Where it came from: ``botserver/telegram.md, p. 3 (Channels > Telegram)``, or a
        crawled page's URL: ``https://example.com/docs/setup (Setup > Telegram)``."""
        where = self.source if is_web_source(self.source) else f"{self.collection}/{self.source}"
        if self.page is not None:
            where += f", p. {self.page}"
        if self.heading:
            where += f" ({self.heading})"
        return where

    @classmethod
    def from_hit(cls, hit: KbHit) -> Passage:
        return cls(hit.text, hit.collection, hit.source, hit.heading, hit.page, hit.score)


async def search_passages(
    index: KnowledgeIndex,
    bot: str,
    collections: Sequence[str],
    question: str,
    *,
    embedder: Embedder | None = None,
    limit: int = 5,
    mode: SearchMode = SearchMode.HYBRID,
) -> list[Passage]:
    """The best ``limit`` passages of ``bot``'s ``collections`` for ``question``."""
    question = question.strip()
    if not question or not collections:
        return []
    vector = None
    if embedder is not None and mode is not SearchMode.LEXICAL:
        try:
            vector = (await embedder.embed([question]))[0]
        except EmbeddingFailed as e:
            log.warning("kb: bot %r: question not embedded, lexical search only: %s", bot, e)
            mode = SearchMode.LEXICAL
    query = KbQuery(
        question,
        limit=limit,
        mode=mode,
        vector=vector,
        space=embedder.space if vector is not None and embedder is not None else None,
    )
    hits = await index.search(bot, collections, query)
    return [Passage.from_hit(h) for h in hits]
