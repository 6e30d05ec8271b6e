"""The store behind the semantic LLM cache: answers by exact key, by nearest vector, per scope.

A *scope* is everything besides the question that decides a model's answer (the bot, its
model, the system prompt, the knowledge base's version…), reduced by the pipeline
(:mod:`pipeline.llm_cache`) to one opaque string; entries of one scope never answer
another's requests. Inside a scope an entry is found by its exact key (the hash of the
normalized question), or by the similarity of its question's vector to the asked one's.

Every entry lives ``ttl`` seconds; a scope keeps at most ``max_similar`` vectors, the
newest. A bot's knowledge-base version is kept here too, so that every gateway instance
sharing the store sees an ingestion at once (the pipeline puts it in the scope).

Backends: in-process (:mod:`storage.llm_cache_memory`, numpy) and Redis
(:mod:`storage.llm_cache_redis`), one contract suite over both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A model's answer kept for a question."""

    question: str  # as the user wrote it: the guard reads its case and its words
    answer: str
    created: float  # Unix time it was stored


@dataclass(frozen=True, slots=True)
class SimilarAnswer:
    """An entry whose question's vector is ``score`` (cosine) from the asked one's."""

    score: float
    entry: CachedAnswer


class AnswerStore(Protocol):
    """Cached model answers, scoped by bot and scope."""

    async def kb_version(self, bot: str) -> int:
        """The bot's knowledge-base version (0 before any change)."""
        ...

    async def bump_kb_version(self, bot: str) -> int:
        """Count a change of the bot's knowledge base; returns the new version."""
        ...

    async def get(self, bot: str, scope: str, key: str) -> CachedAnswer | None:
        """The entry stored under ``key`` in the scope, unless it expired."""
        ...

    async def similar(
        self, bot: str, scope: str, vector: Sequence[float], *, threshold: float, limit: int
    ) -> list[SimilarAnswer]:
        """Up to ``limit`` live entries of the scope whose vectors have a cosine of at least
        ``threshold`` with ``vector`` (unit vectors), best first."""
        ...

    async def put(
        self,
        bot: str,
        scope: str,
        key: str,
        entry: CachedAnswer,
        *,
        vector: Sequence[float] | None,
        ttl: float,
        max_similar: int,
    ) -> None:
        """Store ``entry`` under ``key`` for ``ttl`` seconds, and with ``vector`` among the
        scope's similarity entries (the oldest beyond ``max_similar`` are dropped)."""
        ...
