"""The embedded knowledge-base index: Qdrant's engine in process (``qdrant-edge-py``).

Each bot has a shard of its own under ``<data_dir>/kb/edge/<bot>``, opened on
first use: bots share no file, and BM25's IDF is the bot's own. A chunk is
a point with its payload (collection, source, ordinal, heading, page, text),
a BM25 term vector and, when the bot has an embedding model, a dense vector
named after that model's space. Keyword indexes on collection and source
keep filtered searches cheap. (One shard for all bots, filtered by bot,
needs the IDF computed over the bot's points at query time: 10 times slower,
p99 11.6 ms at 100k chunks; see bench/bench_kb.py.)

Writes land in a write-ahead log and are searchable at once (by a scan of
the unindexed segment). :meth:`EdgeIndex.optimize` builds the HNSW graph in
a child process (``storage.kb_edge_build``) on a copy of the bot's shard,
then swaps the built copy in: the engine's build holds the GIL for its whole
run (2-3 minutes at 100k chunks), which in this process would stop the event
loop. Searches go on against the old shard meanwhile; a write to the bot
during the build discards the copy, and the next build starts over. Every
other call into the engine runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    FieldCondition,
    Filter,
    Fusion,
    MatchAny,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    Point,
    Prefetch,
    Query,
    QueryRequest,
    RangeFloat,
    ScoredPoint,
    SearchParams,
    SparseVector,
    UpdateOperation,
)

from storage.kb_base import (
    RRF_K,
    IndexedChunk,
    KbHit,
    KbQuery,
    KnowledgeIndexError,
    SearchMode,
    VectorSpace,
    chunk_payload,
    hit_from_payload,
    point_id,
    searchable_text,
)
from storage.kb_lexical import LEXICAL_VECTOR, document_terms, query_terms

T = TypeVar("T")

log = logging.getLogger(__name__)

#: HNSW search breadth: recall@10 >= 0.95 against exact search at 100k chunks (bench/bench_kb.py).
HNSW_EF = 64
#: Each side of a hybrid search contributes this many candidates per result wanted.
PREFETCH_FACTOR = 4

_KEYWORDS = ("collection", "source")


class EdgeIndex:
    """:class:`storage.kb_base.KnowledgeIndex` in process, one shard per bot under ``root``."""

    def __init__(self, root: Path, *, language: str = "english") -> None:
        self._root = root
        self._language = language
        self._shards: dict[str, EdgeShard] = {}
        self._spaces: set[tuple[str, str]] = set()  # (bot, vector name) made in its shard
        self._dirty: set[str] = set()  # bots written since their last index build
        self._writes: dict[str, int] = {}  # per bot, to tell a build overtaken by writes
        self._lock = threading.Lock()  # guards the four above
        self._bot_locks: dict[str, asyncio.Lock] = {}  # a bot's writes against its build's copy
        self._optimizing = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, root: Path, *, language: str = "english") -> EdgeIndex:
        """The index under ``root`` (made if missing), every bot's shard loaded.

        Loading holds the GIL (~0.2 s per 30k chunks), so it happens here, at
        start, rather than on a bot's first search.
        """
        index = cls(root, language=language)
        await asyncio.to_thread(index._load_all)
        return index

    def _load_all(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        for marker in sorted(self._root.glob("*.bot")):
            self._shard(marker.read_text("utf-8"), create=False)

    async def replace_source(
        self,
        bot: str,
        collection: str,
        source: str,
        chunks: Sequence[IndexedChunk],
        *,
        space: VectorSpace | None = None,
    ) -> None:
        def write() -> None:
            # Built here, in the executor: the terms of a long document's chunks (tokens,
            # stems) took a loaded machine's loop for a third of a second.
            points = [self._point(bot, collection, source, chunk, space) for chunk in chunks]
            shard = self._shard(bot, create=True)
            assert shard is not None
            if space is not None:
                self._ensure_space(bot, shard, space)
            if points:
                shard.update(UpdateOperation.upsert_points(points))
            # Chunk ids follow their ordinal, so the upsert overwrote chunks
            # 0..n-1 in place; what is left past n is from a longer old version.
            stale = _source_filter(collection, source, from_ordinal=len(points))
            shard.update(UpdateOperation.delete_points_by_filter(stale))
            self._wrote(bot)

        async with self._bot_lock(bot):
            await self._run(write)

    async def delete_source(self, bot: str, collection: str, source: str) -> None:
        stale = _source_filter(collection, source)

        def delete() -> None:
            shard = self._shard(bot, create=False)
            if shard is not None:
                shard.update(UpdateOperation.delete_points_by_filter(stale))
                self._wrote(bot)

        async with self._bot_lock(bot):
            await self._run(delete)

    async def search(self, bot: str, collections: Sequence[str], query: KbQuery) -> list[KbHit]:
        if not collections or query.limit <= 0:
            return []
        scope = _scope_filter(collections)
        terms = query_terms(query.text, language=self._language)
        lexical = (
            Prefetch(
                limit=query.limit * PREFETCH_FACTOR,
                query=Query.Nearest(
                    SparseVector(terms.indices, terms.values), using=LEXICAL_VECTOR
                ),
                filter=scope,
            )
            if terms.indices and query.mode is not SearchMode.DENSE
            else None
        )
        dense = (
            Prefetch(
                limit=query.limit * PREFETCH_FACTOR,
                query=Query.Nearest([float(x) for x in query.vector], using=query.space.name),
                filter=scope,
                params=SearchParams(hnsw_ef=HNSW_EF),
            )
            if query.vector is not None
            and query.space is not None
            and query.mode is not SearchMode.LEXICAL
            else None
        )
        stages = [p for p in (lexical, dense) if p is not None]
        if not stages:
            return []
        if len(stages) == 1:
            only = stages[0]
            request = QueryRequest(
                limit=query.limit,
                query=only.query,
                filter=scope,
                params=only.params,
                with_payload=True,
            )
        else:
            # The stub's union names Fusion, not its Rrf, which the engine takes.
            fusion: Any = Fusion.Rrf(k=RRF_K)
            request = QueryRequest(
                limit=query.limit, prefetches=stages, query=fusion, with_payload=True
            )
        space = query.space if dense is not None else None

        def run() -> list[ScoredPoint]:
            shard = self._shard(bot, create=False)
            if shard is None:
                return []
            if space is not None:
                self._ensure_space(bot, shard, space)
            return shard.query(request)

        found = await self._run(run)
        return [hit_from_payload(p.payload or {}, p.score) for p in found]

    async def count(self, bot: str, collection: str | None = None) -> int:
        flt = None
        if collection is not None:
            flt = Filter(must=[FieldCondition("collection", match=MatchValue(collection))])
        request = CountRequest(filter=flt, exact=True)

        def run() -> int:
            shard = self._shard(bot, create=False)
            return 0 if shard is None else shard.count(request)

        return await self._run(run)

    async def optimize(self) -> None:
        # One build at a time; a second caller waits for it, then finds little to do.
        async with self._optimizing:
            with self._lock:
                bots, self._dirty = sorted(self._dirty), set()
            for bot in bots:
                if not self._closed:
                    await self._build(bot)

    async def close(self) -> None:
        def shut() -> None:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                shards, self._shards = list(self._shards.values()), {}
            for shard in shards:
                shard.flush()
                shard.close()

        async with self._optimizing:  # a running build finishes (or is discarded) first
            await asyncio.to_thread(shut)

    async def _build(self, bot: str) -> None:
        """Build the bot's indexes on a copy, in a child process, and swap the copy in."""
        path = self.shard_path(bot)
        copy = path.with_name(path.name + ".build")
        async with self._bot_lock(bot):
            shard = await self._run(lambda: self._shard(bot, create=False))
            if shard is None:
                return
            written = self._writes.get(bot, 0)

            def snapshot() -> None:
                shard.flush()
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(path, copy)

            await asyncio.to_thread(snapshot)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "storage.kb_edge_build", str(copy)
        )
        if await child.wait() != 0:
            log.error("kb: building the index of bot %r failed (exit %s)", bot, child.returncode)
            await asyncio.to_thread(shutil.rmtree, copy, True)
            return
        async with self._bot_lock(bot):
            if self._closed or self._writes.get(bot, 0) != written:
                await asyncio.to_thread(shutil.rmtree, copy, True)  # overtaken: built again later
                return
            await asyncio.to_thread(self._swap, bot, path, copy)

    def _swap(self, bot: str, path: Path, copy: Path) -> None:
        old_dir = path.with_name(path.name + ".old")
        shutil.rmtree(old_dir, ignore_errors=True)
        path.rename(old_dir)  # the open shard keeps its files, and serves until replaced
        copy.rename(path)
        built = EdgeShard.load(str(path))
        with self._lock:
            old = self._shards.get(bot)
            self._shards[bot] = built
        if old is not None:
            old.close()
        shutil.rmtree(old_dir, ignore_errors=True)

    def _wrote(self, bot: str) -> None:
        with self._lock:
            self._dirty.add(bot)
            self._writes[bot] = self._writes.get(bot, 0) + 1

    def _bot_lock(self, bot: str) -> asyncio.Lock:
        return self._bot_locks.setdefault(bot, asyncio.Lock())

    def shard_path(self, bot: str) -> Path:
        """The bot's shard folder: its name made safe, plus a hash that keeps names distinct."""
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", bot)[:40]
        return self._root / f"{slug}_{hashlib.sha256(bot.encode()).hexdigest()[:8]}"

    def _shard(self, bot: str, *, create: bool) -> EdgeShard | None:
        """The bot's open shard; loaded from disk, or made when ``create`` (blocking)."""
        with self._lock:
            if self._closed:
                raise KnowledgeIndexError("the knowledge index is closed")
            shard = self._shards.get(bot)
            if shard is None:
                path = self.shard_path(bot)
                found = (path / "edge_config.json").exists() or path.with_name(
                    path.name + ".old"
                ).exists()
                if not create and not found:
                    return None
                shard = self._shards[bot] = _load_or_create(path)
                marker = path.with_name(path.name + ".bot")  # names the bot, for _load_all
                if not marker.exists():
                    marker.write_text(bot, "utf-8")
            return shard

    def _point(
        self,
        bot: str,
        collection: str,
        source: str,
        chunk: IndexedChunk,
        space: VectorSpace | None,
    ) -> Point:
        terms = document_terms(searchable_text(chunk), language=self._language)
        vectors: dict[str, list[float] | SparseVector] = {
            LEXICAL_VECTOR: SparseVector(terms.indices, terms.values)
        }
        if chunk.vector is not None:
            if space is None or len(chunk.vector) != space.dim:
                raise KnowledgeIndexError(f"{source} chunk {chunk.ordinal}: vector off its space")
            vectors[space.name] = [float(x) for x in chunk.vector]
        payload = chunk_payload(bot, collection, source, chunk)
        return Point(point_id(bot, collection, source, chunk.ordinal), vectors, payload)  # type: ignore[arg-type]

    def _ensure_space(self, bot: str, shard: EdgeShard, space: VectorSpace) -> None:
        with self._lock:
            if (bot, space.name) not in self._spaces:
                # Idempotent in the engine: a space made by an earlier process is kept.
                op = UpdateOperation.create_dense_vector(space.name, space.dim, Distance.Cosine)
                shard.update(op)
                self._spaces.add((bot, space.name))

    async def _run(self, call: Callable[[], T]) -> T:
        if self._closed:
            raise KnowledgeIndexError("the knowledge index is closed")
        try:
            return await asyncio.to_thread(call)
        except KnowledgeIndexError:
            raise
        except Exception as e:  # the engine raises plain Exception with its message
            raise KnowledgeIndexError(f"knowledge index: {e}") from e


def _load_or_create(path: Path) -> EdgeShard:
    old_dir = path.with_name(path.name + ".old")
    if not path.exists() and old_dir.exists():
        old_dir.rename(path)  # the process stopped between the two renames of a swap
    if (path / "edge_config.json").exists():
        return EdgeShard.load(str(path))
    path.mkdir(parents=True, exist_ok=True)
    config = EdgeConfig(
        vectors={},
        sparse_vectors={LEXICAL_VECTOR: EdgeSparseVectorParams(modifier=Modifier.Idf)},
    )
    shard = EdgeShard.create(str(path), config)
    for field in _KEYWORDS:
        shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
    shard.update(UpdateOperation.create_field_index("ordinal", PayloadSchemaType.Integer))
    return shard


def _scope_filter(collections: Sequence[str]) -> Filter:
    return Filter(must=[FieldCondition("collection", match=MatchAny(list(collections)))])


def _source_filter(collection: str, source: str, *, from_ordinal: int = 0) -> Filter:
    must = [
        FieldCondition("collection", match=MatchValue(collection)),
        FieldCondition("source", match=MatchValue(source)),
    ]
    if from_ordinal:
        must.append(FieldCondition("ordinal", range=RangeFloat(gte=float(from_ordinal))))
    return Filter(must=list(must))
