"""The lexical side of the knowledge base: BM25 term vectors with stemming.

Both Qdrant backends store a chunk's terms as a sparse vector whose weights
are BM25's term-frequency part; the index applies inverse document
frequency at query time (the sparse vector's IDF modifier), computed over
the searched bot's own chunks. The encoder is Qdrant Edge's, so the embedded
engine and a Qdrant server rank the same way. It needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from qdrant_edge import Bm25, Bm25Config

#: The sparse vector's name in both backends.
LEXICAL_VECTOR = "bm25"


@dataclass(frozen=True, slots=True)
class TermVector:
    """Token ids and their weights; empty when the text has no searchable word."""

    indices: list[int]
    values: list[float]


@cache
def _encoder(language: str) -> Bm25:
    # Chunks are ~1000 characters; BM25's length normalization centres on this.
    return Bm25(Bm25Config(language=language, avg_len=160.0))


def document_terms(text: str, *, language: str = "english") -> TermVector:
    """The term vector a chunk is stored with."""
    vector = _encoder(language).embed_document(text)
    return TermVector(list(vector.indices), list(vector.values))


def query_terms(text: str, *, language: str = "english") -> TermVector:
    """The term vector a question is searched with (each distinct term weighs 1)."""
    vector = _encoder(language).embed_query(text)
    return TermVector(list(vector.indices), list(vector.values))
