"""Embedding models for dense retrieval: the contract and an endpoint-backed one.

An embedder turns texts into unit vectors of one :class:`VectorSpace`. The
knowledge base works without one (lexical search only); with one, ingestion
embeds every chunk and search fuses both rankings.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pipeline.errors import PipelineError
from storage.kb_base import VectorSpace

#: An OpenAI-compatible embeddings call: texts in, one vector per text out, in order.
EmbedCall = Callable[[list[str]], Awaitable[list[list[float]]]]


class EmbeddingFailed(PipelineError):
    """The embedding model gave no usable vectors."""


class Embedder(Protocol):
    """Texts to vectors in :attr:`space`, never blocking the event loop."""

    @property
    def space(self) -> VectorSpace:
        """The model and dimension of the vectors it makes."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order."""
        ...


class EndpointEmbedder:
    """Vectors from a remote model through ``call`` (e.g. an ``openai`` client's
    ``embeddings.create``, wrapped by the caller), in batches of ``batch_size``."""

    def __init__(self, call: EmbedCall, *, model: str, dim: int, batch_size: int = 64) -> None:
        self._call = call
        self._space = VectorSpace(model, dim)
        self._batch = batch_size

    @property
    def space(self) -> VectorSpace:
        return self._space

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self._batch):
            batch = list(texts[start : start + self._batch])
            vectors = await self._call(batch)
            if len(vectors) != len(batch):
                raise EmbeddingFailed(f"{len(batch)} texts sent, {len(vectors)} vectors back")
            for vector in vectors:
                if len(vector) != self._space.dim:
                    space = self._space
                    raise EmbeddingFailed(
                        f"{space.model}: a {len(vector)}-dim vector, {space.dim} expected"
                    )
                out.append(_unit(vector))
        return out


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise EmbeddingFailed("a zero or non-finite vector")
    return [x / norm for x in vector]
