"""The knowledge-base index on a Qdrant server (``QDRANT_URL``), through ``qdrant-client``.

One collection per bot (``<prefix>kb_<bot>``): bots never share a collection,
so a search cannot reach another bot's chunks and BM25's IDF is the bot's
own. Each point carries a BM25 term vector (sparse, IDF applied by the
server) and, when the bot has an embedding model, a dense vector in that
model's space; a hybrid search is fused by the server (reciprocal rank).

A collection's dense space is fixed when it is made. A write in another
space (the bot's embedding model changed) makes the collection anew, and
ingestion, which sees the model change on every file, indexes them all again.

``location=":memory:"`` runs qdrant-client's local mode, a brute-force
stand-in used by the contract suite where no Qdrant server is installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Sequence

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ApiException

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
from storage.kb_edge import HNSW_EF, PREFETCH_FACTOR
from storage.kb_lexical import LEXICAL_VECTOR, document_terms, query_terms

log = logging.getLogger(__name__)

_NO_SPACE = ""


class QdrantIndex:
    """:class:`storage.kb_base.KnowledgeIndex` on a Qdrant server (or local mode)."""

    def __init__(
        self,
        client: AsyncQdrantClient,
        *,
        prefix: str = "",
        language: str = "english",
        local: bool = False,
    ) -> None:
        self._client = client
        self._local = local  # local mode scans everything: no payload indexes, no HNSW
        self._prefix = prefix
        self._language = language
        self._spaces: dict[str, str] = {}  # collection name -> its dense vector name, or ""

    @classmethod
    def connect(
        cls, url: str, *, api_key: str | None = None, prefix: str = "", timeout: float = 10.0
    ) -> QdrantIndex:
        """A client for the server at ``url`` (``:memory:`` for local mode)."""
        if url == ":memory:":
            return cls(AsyncQdrantClient(location=":memory:"), prefix=prefix, local=True)
        client = AsyncQdrantClient(url=url, api_key=api_key, timeout=int(timeout))
        return cls(client, prefix=prefix)

    async def replace_source(
        self,
        bot: str,
        collection: str,
        source: str,
        chunks: Sequence[IndexedChunk],
        *,
        space: VectorSpace | None = None,
    ) -> None:
        name = await self._collection(bot, space, create=True)
        # The chunks' terms (tokens, stems) in a thread: a long document's took a loaded
        # machine's loop for a third of a second.
        points = await asyncio.to_thread(
            lambda: [self._point(bot, collection, source, chunk, space) for chunk in chunks]
        )
        try:
            if points:
                await self._client.upsert(name, points=points, wait=True)
            stale = _source_filter(collection, source, from_ordinal=len(points))
            await self._client.delete(name, models.FilterSelector(filter=stale), wait=True)
        except (ApiException, OSError, ValueError) as e:
            raise KnowledgeIndexError(f"qdrant: writing {collection}/{source}: {e}") from e

    async def delete_source(self, bot: str, collection: str, source: str) -> None:
        name = await self._collection(bot, None, create=False)
        if not name:
            return
        try:
            selector = models.FilterSelector(filter=_source_filter(collection, source))
            await self._client.delete(name, selector, wait=True)
        except (ApiException, OSError, ValueError) as e:
            raise KnowledgeIndexError(f"qdrant: deleting {collection}/{source}: {e}") from e

    async def search(self, bot: str, collections: Sequence[str], query: KbQuery) -> list[KbHit]:
        if not collections or query.limit <= 0:
            return []
        name = await self._collection(bot, None, create=False)
        if not name:
            return []
        wanted = models.MatchAny(any=list(collections))
        scope = models.Filter(must=[models.FieldCondition(key="collection", match=wanted)])
        stages: list[models.Prefetch] = []
        terms = query_terms(query.text, language=self._language)
        if terms.indices and query.mode is not SearchMode.DENSE:
            sparse = models.SparseVector(indices=terms.indices, values=terms.values)
            stages.append(
                models.Prefetch(
                    query=sparse,
                    using=LEXICAL_VECTOR,
                    filter=scope,
                    limit=query.limit * PREFETCH_FACTOR,
                )
            )
        if (
            query.vector is not None
            and query.space is not None
            and query.mode is not SearchMode.LEXICAL
            and self._spaces.get(name) == query.space.name
        ):
            stages.append(
                models.Prefetch(
                    query=[float(x) for x in query.vector],
                    using=query.space.name,
                    filter=scope,
                    limit=query.limit * PREFETCH_FACTOR,
                    params=None if self._local else models.SearchParams(hnsw_ef=HNSW_EF),
                )
            )
        if not stages:
            return []
        try:
            if len(stages) == 1:
                only = stages[0]
                response = await self._client.query_points(
                    name,
                    query=only.query,
                    using=only.using,
                    query_filter=scope,
                    search_params=only.params,
                    limit=query.limit,
                    with_payload=True,
                )
            else:
                response = await self._client.query_points(
                    name,
                    prefetch=stages,
                    query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
                    limit=query.limit,
                    with_payload=True,
                )
        except (ApiException, OSError, ValueError) as e:
            raise KnowledgeIndexError(f"qdrant: searching {name}: {e}") from e
        return [hit_from_payload(p.payload or {}, p.score) for p in response.points]

    async def count(self, bot: str, collection: str | None = None) -> int:
        name = await self._collection(bot, None, create=False)
        if not name:
            return 0
        flt = None
        if collection is not None:
            match = models.MatchValue(value=collection)
            flt = models.Filter(must=[models.FieldCondition(key="collection", match=match)])
        try:
            result = await self._client.count(name, count_filter=flt, exact=True)
        except (ApiException, OSError, ValueError) as e:
            raise KnowledgeIndexError(f"qdrant: counting {name}: {e}") from e
        return int(result.count)

    async def optimize(self) -> None:
        """Nothing to do: the server builds its indexes itself, in the background."""

    async def close(self) -> None:
        await self._client.close()

    def collection_name(self, bot: str) -> str:
        """The bot's collection: its name made safe, plus a hash that keeps names distinct."""
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", bot)[:40]
        digest = hashlib.sha256(bot.encode()).hexdigest()[:8]
        return f"{self._prefix}kb_{slug}_{digest}"

    async def _collection(self, bot: str, space: VectorSpace | None, *, create: bool) -> str:
        """The bot's collection name, made (or made anew for ``space``) when writing."""
        name = self.collection_name(bot)
        wanted = space.name if space is not None else None
        try:
            if name not in self._spaces:
                if await self._client.collection_exists(name):
                    info = await self._client.get_collection(name)
                    dense = info.config.params.vectors
                    names = list(dense) if isinstance(dense, dict) else []
                    self._spaces[name] = names[0] if names else _NO_SPACE
                elif not create:
                    return ""
                else:
                    await self._create(name, space)
                    return name
            current = self._spaces[name]
            if create and wanted is not None and current != wanted:
                log.warning(
                    "kb: bot %r now embeds in %s (was %s); its collection is made anew",
                    bot,
                    wanted,
                    current or "no dense space",
                )
                await self._client.delete_collection(name)
                await self._create(name, space)
        except (ApiException, OSError, ValueError) as e:
            raise KnowledgeIndexError(f"qdrant: collection {name}: {e}") from e
        return name

    async def _create(self, name: str, space: VectorSpace | None) -> None:
        vectors = (
            {space.name: models.VectorParams(size=space.dim, distance=models.Distance.COSINE)}
            if space is not None
            else {}
        )
        await self._client.create_collection(
            name,
            vectors_config=vectors,
            sparse_vectors_config={
                LEXICAL_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
            },
        )
        if self._local:
            self._spaces[name] = space.name if space is not None else _NO_SPACE
            return
        for field, schema in (
            ("collection", models.PayloadSchemaType.KEYWORD),
            ("source", models.PayloadSchemaType.KEYWORD),
            ("ordinal", models.PayloadSchemaType.INTEGER),
        ):
            await self._client.create_payload_index(name, field, field_schema=schema)
        self._spaces[name] = space.name if space is not None else _NO_SPACE

    def _point(
        self,
        bot: str,
        collection: str,
        source: str,
        chunk: IndexedChunk,
        space: VectorSpace | None,
    ) -> models.PointStruct:
        terms = document_terms(searchable_text(chunk), language=self._language)
        vector: dict[str, list[float] | models.SparseVector] = {
            LEXICAL_VECTOR: models.SparseVector(indices=terms.indices, values=terms.values)
        }
        if chunk.vector is not None:
            if space is None or len(chunk.vector) != space.dim:
                raise KnowledgeIndexError(f"{source} chunk {chunk.ordinal}: vector off its space")
            vector[space.name] = [float(x) for x in chunk.vector]
        return models.PointStruct(
            id=point_id(bot, collection, source, chunk.ordinal),
            vector=vector,  # type: ignore[arg-type]
            payload=chunk_payload(bot, collection, source, chunk),
        )


def _source_filter(collection: str, source: str, *, from_ordinal: int = 0) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(key="collection", match=models.MatchValue(value=collection)),
        models.FieldCondition(key="source", match=models.MatchValue(value=source)),
    ]
    if from_ordinal:
        must.append(models.FieldCondition(key="ordinal", range=models.Range(gte=from_ordinal)))
    return models.Filter(must=must)
