"""The semantic cache in front of the LLM: an exact tier and a similarity tier, per scope.

A question the model answered is kept, with its answer, under a *scope*: the hash of
everything else the model read or could do for it (the bot; its providers, models,
temperature and token cap; the system prompt; the ``SET CONTEXT`` text; the tools offered;
the session's knowledge-base collections and the bot's knowledge-base version; the
embedding model). An entry answers only a request of the same scope, so a context written
for one user never answers another, and an ingestion (which bumps the bot's version in the
store, see :meth:`LLMCache.knowledge_changed`) makes every older entry of the bot
unreachable; they then expire.

Inside a scope:

1. **exact tier**: the hash of the question's :func:`pipeline.cache_guard.exact_form`
   (case, spacing and final punctuation do not count);
2. **similarity tier** (``llm-cache-semantic``): the question's embedding, by the packaged
   local model, off the event loop; an entry whose question has a cosine of at least
   ``llm-cache-threshold`` answers, if :mod:`pipeline.cache_guard` agrees that the two
   questions may share an answer (no negation, number, name or other word differs).

The rows are General Bots': ``llm-cache`` (off unless ``true``, as General Bots documents
it and ships its default bot), ``llm-cache-ttl`` (seconds, 3600), ``llm-cache-semantic``
(``true``), ``llm-cache-threshold`` (0.95); ours: ``llm-cache-max-entries`` (similarity
entries kept per scope, 100, General Bots' ``max_similarity_checks``).

Which turns may use it is the LLM stage's decision (:mod:`pipeline.llm_stage`). The cache
is an optimization: a store or an embedding model that fails costs a model call (logged
and counted), never a turn. Counters of hits and misses by tier are this process's.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from config.packages import BotConfig
from pipeline.cache_guard import difference, exact_form, folded
from pipeline.kb.embedders import Embedder
from pipeline.kb.local_embedder import LocalModelUnavailable
from pipeline.llm import (
    Completion,
    CompletionRequest,
    LLMProvider,
    StreamDone,
    StreamEvent,
    ToolDefinition,
)
from storage.llm_cache_base import AnswerStore, CachedAnswer

log = logging.getLogger(__name__)

DEFAULT_TTL = 3600.0
DEFAULT_THRESHOLD = 0.95
DEFAULT_MAX_SIMILAR = 100
CANDIDATES = 5  # near matches the guard reads before the lookup counts as a miss
PIECE_CHARS = 48  # a cached answer streams in pieces of about this size

Tier = Literal["exact", "similar"]
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def _flag(config: BotConfig, key: str, default: bool) -> bool:
    value = config.get(key, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """A bot's cache rows, read from its config.csv."""

    enabled: bool = False
    ttl: float = DEFAULT_TTL
    semantic: bool = True
    threshold: float = DEFAULT_THRESHOLD
    max_similar: int = DEFAULT_MAX_SIMILAR

    @classmethod
    def from_config(cls, config: BotConfig) -> CacheSettings:
        """The rows, each falling back to its default when absent or out of range."""
        ttl = config.number("llm-cache-ttl", DEFAULT_TTL)
        threshold = config.number("llm-cache-threshold", DEFAULT_THRESHOLD)
        max_similar = config.integer("llm-cache-max-entries", DEFAULT_MAX_SIMILAR)
        return cls(
            enabled=_flag(config, "llm-cache", False),
            ttl=ttl if ttl > 0 else DEFAULT_TTL,
            semantic=_flag(config, "llm-cache-semantic", True),
            threshold=threshold if 0 < threshold <= 1 else DEFAULT_THRESHOLD,
            max_similar=max_similar if max_similar > 0 else DEFAULT_MAX_SIMILAR,
        )


@dataclass(slots=True)
class CacheCounters:
    """One bot's lookups in this process, by tier."""

    exact_hits: int = 0
    exact_misses: int = 0
    similar_hits: int = 0
    similar_misses: int = 0
    similar_refused: int = 0  # near matches the guard turned down
    stored: int = 0
    skipped: int = 0  # turns of a bot with the cache on that could not use it
    errors: int = 0  # store or embedding failures (the turn went to the model)

    def as_json(self) -> dict[str, Any]:
        return {
            "exact": {"hits": self.exact_hits, "misses": self.exact_misses},
            "similar": {
                "hits": self.similar_hits,
                "misses": self.similar_misses,
                "refused": self.similar_refused,
            },
            "stored": self.stored,
            "skipped": self.skipped,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class CacheRequest:
    """A model request as the cache sees it: the question and what decides its scope."""

    bot: str
    question: str
    model: Sequence[Any]  # the providers, as JSON-able values (kind, url, model, options)
    system: str
    context: str | None
    tools: Sequence[ToolDefinition]
    collections: Sequence[str]


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a lookup found: the answer and its tier, or a miss and what storing needs."""

    bot: str
    question: str
    scope: str | None = None  # None: the store failed; nothing is stored either
    key: str = ""
    vector: list[float] | None = None
    answer: str | None = None
    tier: Tier | None = None
    score: float = 0.0

    @property
    def hit(self) -> bool:
        return self.answer is not None


def stream_pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """``text`` in pieces of about ``size`` characters, cut after a space, to stream a cached
    answer the way a model streams one; the pieces join to ``text``."""
    pieces: list[str] = []
    start = 0
    while len(text) - start > size:
        cut = text.rfind(" ", start + 1, start + size + 1)
        if cut < 0:  # a word longer than a piece: cut after it
            cut = text.find(" ", start + size)
            if cut < 0:
                break
        pieces.append(text[start : cut + 1])
        start = cut + 1
    pieces.append(text[start:])
    return pieces


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class LLMCache:
    """The cache over one :class:`AnswerStore`, with ``embedder`` for the similarity tier
    (None: exact tier only)."""

    def __init__(self, store: AnswerStore, *, embedder: Embedder | None = None) -> None:
        self._store = store
        self._embedder = embedder
        self._counters: dict[str, CacheCounters] = {}
        self._settings: dict[str, tuple[BotConfig, CacheSettings]] = {}

    def settings(self, bot: str, config: BotConfig) -> CacheSettings:
        """The bot's cache rows, read once per loaded configuration (a reload brings a new
        one): reading them costs more than an exact lookup."""
        known = self._settings.get(bot)
        if known is None or known[0] is not config:
            known = self._settings[bot] = (config, CacheSettings.from_config(config))
        return known[1]

    def counters(self, bot: str) -> CacheCounters:
        return self._counters.setdefault(bot, CacheCounters())

    def skipped(self, bot: str) -> None:
        """Count a turn of a bot with the cache on that could not use it."""
        self.counters(bot).skipped += 1

    def report(self, bot: str, settings: CacheSettings) -> dict[str, Any]:
        """The bot's settings and counters, for the gateway's cache state endpoint."""
        embedder = self._embedder.space.model if self._embedder is not None else None
        return {
            "bot": bot,
            "enabled": settings.enabled,
            "semantic": settings.semantic and embedder is not None,
            "threshold": settings.threshold,
            "ttl": settings.ttl,
            "max_entries": settings.max_similar,
            "embedding_model": embedder,
            "counters": self.counters(bot).as_json(),
        }

    async def knowledge_changed(self, bot: str) -> None:
        """The bot's knowledge base changed: its entries so far are not to be served."""
        try:
            version = await self._store.bump_kb_version(bot)
        except Exception:  # entries then live out their ttl; the failure is logged
            log.exception("llm cache: bot %s: could not record a knowledge-base change", bot)
            self.counters(bot).errors += 1
            return
        log.info(
            "llm cache: bot %s: knowledge base version %d, older answers dropped", bot, version
        )

    async def _scope(self, request: CacheRequest) -> str:
        version = await self._store.kb_version(request.bot)
        space = self._embedder.space if self._embedder is not None else None
        parts = {
            "bot": request.bot,
            "model": list(request.model),
            "system": request.system,
            "context": request.context,
            "tools": [[t.name, t.description, t.parameters] for t in request.tools],
            "kb": [version, sorted(request.collections)],
            "embedding": [space.model, space.dim] if space is not None else None,
        }
        return _digest(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS, default=str))

    async def _embed(self, bot: str, text: str) -> list[float] | None:
        embedder = self._embedder
        if embedder is None:
            return None
        try:
            (vector,) = await embedder.embed([text])
        except LocalModelUnavailable as e:  # for good: the similarity tier is off from now on
            log.error("llm cache: the embedding model cannot run (%s): exact tier only", e)
            self._embedder = None
            return None
        except Exception:  # this question goes without the similarity tier; logged
            log.exception("llm cache: bot %s: embedding the question failed", bot)
            self.counters(bot).errors += 1
            return None
        return vector

    async def lookup(self, request: CacheRequest, settings: CacheSettings) -> Lookup:
        """The cached answer to ``request``, exact tier first, then similar questions."""
        bot, question = request.bot, request.question
        counters = self.counters(bot)
        try:
            scope = await self._scope(request)
            key = _digest(exact_form(question).encode())
            found = await self._store.get(bot, scope, key)
        except Exception:  # the turn goes to the model; logged
            log.exception("llm cache: bot %s: lookup failed", bot)
            counters.errors += 1
            return Lookup(bot, question)
        if found is not None:
            counters.exact_hits += 1
            return Lookup(bot, question, scope, key, answer=found.answer, tier="exact", score=1.0)
        counters.exact_misses += 1
        if not settings.semantic:
            return Lookup(bot, question, scope, key)
        vector = await self._embed(bot, folded(question))
        if vector is None:
            return Lookup(bot, question, scope, key)
        try:
            matches = await self._store.similar(
                bot, scope, vector, threshold=settings.threshold, limit=CANDIDATES
            )
        except Exception:  # as above
            log.exception("llm cache: bot %s: similarity lookup failed", bot)
            counters.errors += 1
            return Lookup(bot, question, scope, key, vector)
        for match in matches:
            why = difference(match.entry.question, question)
            if why is None:
                counters.similar_hits += 1
                return Lookup(
                    bot,
                    question,
                    scope,
                    key,
                    vector,
                    answer=match.entry.answer,
                    tier="similar",
                    score=match.score,
                )
            counters.similar_refused += 1
            log.debug(
                "llm cache: bot %s: %r is %.3f from %r but differs in %s: not shared",
                bot,
                question,
                match.score,
                match.entry.question,
                why,
            )
        counters.similar_misses += 1
        return Lookup(bot, question, scope, key, vector)

    async def store(self, lookup: Lookup, answer: str, settings: CacheSettings) -> None:
        """Keep the model's ``answer`` to the question of a missed ``lookup``."""
        if lookup.scope is None or lookup.hit or not answer.strip():
            return
        entry = CachedAnswer(question=lookup.question, answer=answer, created=time.time())
        try:
            await self._store.put(
                lookup.bot,
                lookup.scope,
                lookup.key,
                entry,
                vector=lookup.vector if settings.semantic else None,
                ttl=settings.ttl,
                max_similar=settings.max_similar,
            )
        except Exception:  # the answer was given; only its reuse is lost (logged)
            log.exception("llm cache: bot %s: storing an answer failed", lookup.bot)
            self.counters(lookup.bot).errors += 1
            return
        self.counters(lookup.bot).stored += 1


class AnswerRecorder:
    """A bot's provider, noting what each of a turn's model requests answered, so that the
    LLM stage can keep the answer of a turn that made one request and called no tool."""

    def __init__(self, provider: LLMProvider) -> None:
        self._provider = provider
        self.completions: list[Completion | None] = []

    @property
    def name(self) -> str:
        return self._provider.name

    @property
    def answer(self) -> str | None:
        """The answer, when the turn made one request that called no tool and ended."""
        if len(self.completions) != 1 or self.completions[0] is None:
            return None
        completion = self.completions[0]
        if completion.tool_calls or completion.finish_reason != "stop":
            return None
        return completion.text if completion.text.strip() else None

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self._provider.complete(request)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        self.completions.append(None)
        at = len(self.completions) - 1
        async for event in self._provider.stream(request):
            if isinstance(event, StreamDone):
                self.completions[at] = event.completion
            yield event

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._provider.embed(texts)

    async def aclose(self) -> None:
        await self._provider.aclose()
