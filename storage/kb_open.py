"""Open the knowledge-base index the process's settings ask for.

``QDRANT_URL`` set: :class:`storage.kb_qdrant.QdrantIndex` on that server
(``QDRANT_API_KEY`` if it needs one); unset: :class:`storage.kb_edge.EdgeIndex`
under ``<data_dir>/kb/edge``.
"""

from __future__ import annotations

from pathlib import Path

from storage.kb_base import KnowledgeIndex
from storage.kb_edge import EdgeIndex
from storage.kb_qdrant import QdrantIndex


async def open_knowledge_index(
    data_dir: Path, *, qdrant_url: str | None = None, qdrant_api_key: str | None = None
) -> KnowledgeIndex:
    """The index for these settings, ready to use; close it with ``await index.close()``."""
    if qdrant_url:
        return QdrantIndex.connect(qdrant_url, api_key=qdrant_api_key)
    return await EdgeIndex.open(data_dir / "kb" / "edge")
