"""Ingest a bot's ``.gbkb/<collection>/`` files into its knowledge index.

Only what changed is read again: a file whose sha256 and embedding model
match its ``kb_documents`` row is left alone, a file gone from the package
is removed from the index and the rows. Each file's row is written
``indexing`` before its chunks and ``indexed`` after, so a run that stops
half-way is resumed by the next one. A collection whose chunk count in the
index disagrees with its rows (an index wiped or restored) is indexed again
whole. An unreadable file (corrupt, encrypted) is logged, recorded as
``skipped`` with its reason, and ingestion goes on. Rows of crawled web pages (their source
is a URL, see :mod:`pipeline.websites`) are the crawler's and left alone here;
:func:`index_document` indexes both kinds.

Reading, parsing and chunking run in an executor, and so does a local
embedding model; PDF and ``.docx`` files are parsed in worker processes
(:mod:`pipeline.kb.parser_processes`). Nothing CPU-bound runs on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.kb.chunking import Chunk, chunk_sections
from pipeline.kb.documents import ReadDocument, UnreadableDocument
from pipeline.kb.embedders import Embedder, EmbeddingFailed
from pipeline.kb.parser_processes import parse_in_process, read_off_loop
from pipeline.kb.readers import SUPPORTED_SUFFIXES, read_document
from pipeline.kb.web_urls import is_web_source
from storage.kb_base import (
    DocumentStatus,
    IndexedChunk,
    KbDocument,
    KbDocuments,
    KnowledgeIndex,
    searchable_text,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """One file done: ``done`` of ``total`` files so far, and what happened to it."""

    bot: str
    collection: str
    source: str
    done: int
    total: int
    outcome: str  # "indexed", "unchanged", "skipped" or "removed"
    chunks: int = 0


ProgressCallback = Callable[[IngestProgress], None]


@dataclass(slots=True)
class IngestReport:
    """What one ingestion run did."""

    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    pages: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # ("collection/source", reason)
    seconds: float = 0.0


def find_kb_folder(package_dir: Path) -> Path | None:
    """The package's ``<name>.gbkb`` folder (any ``*.gbkb`` if the name differs), or None."""
    own = package_dir / f"{package_dir.name.removesuffix('.gbai')}.gbkb"
    if own.is_dir():
        return own
    return next((p for p in sorted(package_dir.glob("*.gbkb")) if p.is_dir()), None)


def scan_collections(kb_dir: Path | None) -> dict[tuple[str, str], Path]:
    """Every supported file by (collection, its posix path inside the collection)."""
    found: dict[tuple[str, str], Path] = {}
    if kb_dir is None or not kb_dir.is_dir():
        return found
    for folder in sorted(p for p in kb_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
                found[(folder.name, relative.as_posix())] = path
    return found


def embedding_id(embedder: Embedder | None) -> str:
    """What a row records of the model its chunks were embedded with ("" for none)."""
    return f"{embedder.space.model}:{embedder.space.dim}" if embedder is not None else ""


async def ingest_bot(
    bot: str,
    kb_dir: Path | None,
    *,
    index: KnowledgeIndex,
    documents: KbDocuments,
    embedder: Embedder | None = None,
    progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> IngestReport:
    """Bring ``bot``'s index in line with the files under ``kb_dir`` (None: it has none)."""
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    report = IngestReport()
    # Crawled pages (USE WEBSITE) are the website crawler's: a package never removes them.
    rows = {
        (d.collection, d.source): d
        for d in await documents.list(bot)
        if not is_web_source(d.source)
    }
    files = await loop.run_in_executor(executor, scan_collections, kb_dir)
    model = embedding_id(embedder)
    stale = await collections_out_of_step(bot, index, rows)
    total = len(files) + len(rows.keys() - files.keys())
    done = 0

    def tell(collection: str, source: str, outcome: str, chunks: int = 0) -> None:
        if progress is not None:
            progress(IngestProgress(bot, collection, source, done, total, outcome, chunks))

    for collection, source in sorted(rows.keys() - files.keys()):
        await index.delete_source(bot, collection, source)
        await documents.remove(bot, collection, source)
        report.removed += 1
        done += 1
        tell(collection, source, "removed")

    for (collection, source), path in sorted(files.items()):
        data, digest = await loop.run_in_executor(executor, _read_bytes, path)
        row = rows.get((collection, source))
        if row is not None and up_to_date(row, digest, model) and collection not in stale:
            report.unchanged += 1
            done += 1
            tell(collection, source, "unchanged", row.chunk_count)
            continue
        try:
            read = await read_off_loop(
                source, parse_in_process(source), executor, read_document, source, data
            )
        except UnreadableDocument as e:
            log.warning("kb: bot %r: %s/%s skipped: %s", bot, collection, source, e.reason)
            await index.delete_source(bot, collection, source)
            await documents.put(
                bot,
                KbDocument(
                    collection, source, digest, model, DocumentStatus.SKIPPED, error=e.reason
                ),
            )
            report.skipped.append((f"{collection}/{source}", e.reason))
            done += 1
            tell(collection, source, "skipped")
            continue
        chunks = await index_document(
            bot,
            collection,
            source,
            read,
            digest,
            index=index,
            documents=documents,
            embedder=embedder,
            executor=executor,
        )
        report.indexed += 1
        report.chunks += chunks
        report.pages += read.pages or 0
        done += 1
        tell(collection, source, "indexed", chunks)
    report.seconds = time.perf_counter() - started
    return report


async def index_document(
    bot: str,
    collection: str,
    source: str,
    read: ReadDocument,
    digest: str,
    *,
    index: KnowledgeIndex,
    documents: KbDocuments,
    embedder: Embedder | None = None,
    executor: Executor | None = None,
) -> int:
    """Index one document read from ``source`` (a package file, a crawled page) in place of
    what was indexed of it; its row says ``indexing`` until its chunks are all written.
    Chunking, and a local embedding model, run in the executor. How many chunks it has."""
    loop = asyncio.get_running_loop()
    model = embedding_id(embedder)
    await documents.put(bot, KbDocument(collection, source, digest, model, DocumentStatus.INDEXING))
    chunks = await loop.run_in_executor(executor, chunk_sections, read.sections)
    indexed, used = await _embed(bot, f"{collection}/{source}", chunks, embedder)
    space = embedder.space if used and embedder is not None else None
    await index.replace_source(bot, collection, source, indexed, space=space)
    await documents.put(
        bot,
        KbDocument(
            collection,
            source,
            digest,
            model if used else "",
            DocumentStatus.INDEXED,
            chunk_count=len(indexed),
            pages=read.pages,
        ),
    )
    return len(indexed)


def up_to_date(row: KbDocument, digest: str, model: str) -> bool:
    """Whether ``row`` already indexes content of ``digest`` with the embedder ``model``."""
    if row.content_hash != digest:
        return False
    if row.status is DocumentStatus.SKIPPED:
        return True  # the same unreadable bytes stay unreadable
    return row.status is DocumentStatus.INDEXED and row.embedding_id == model


async def collections_out_of_step(
    bot: str, index: KnowledgeIndex, rows: dict[tuple[str, str], KbDocument]
) -> set[str]:
    """The collections whose chunk count in the index disagrees with their rows'."""
    expected: dict[str, int] = {}
    interrupted: set[str] = set()  # collections with a file left half-written
    for (collection, _), row in rows.items():
        indexed = row.chunk_count if row.status is DocumentStatus.INDEXED else 0
        expected[collection] = expected.get(collection, 0) + indexed
        if row.status is DocumentStatus.INDEXING:
            interrupted.add(collection)
    stale = set()
    for collection, count in expected.items():
        found = await index.count(bot, collection)
        # A half-written file adds chunks its row does not count yet; it is redone anyway.
        if found < count or (found > count and collection not in interrupted):
            log.warning(
                "kb: bot %r collection %r has %d chunks indexed, %d recorded: indexing it again",
                bot,
                collection,
                found,
                count,
            )
            stale.add(collection)
    return stale


async def _embed(
    bot: str, name: str, chunks: list[Chunk], embedder: Embedder | None
) -> tuple[list[IndexedChunk], bool]:
    """The chunks to index, with vectors when the embedder gives them (and whether it did)."""
    plain = [IndexedChunk(c.ordinal, c.text, c.heading, c.page) for c in chunks]
    if embedder is None or not plain:
        return plain, False
    try:
        vectors = await embedder.embed([searchable_text(c) for c in plain])
    except EmbeddingFailed as e:
        # Indexed lexically for now; its row records no model, so the next run embeds it.
        log.warning("kb: bot %r: %s indexed without embeddings: %s", bot, name, e)
        return plain, False
    return [
        IndexedChunk(c.ordinal, c.text, c.heading, c.page, vector)
        for c, vector in zip(plain, vectors, strict=True)
    ], True


def _read_bytes(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()
