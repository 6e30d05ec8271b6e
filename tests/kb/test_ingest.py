"""Ingestion: only changed files re-read, deleted ones removed, resumable, bad PDFs skipped."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from pipeline.kb.embedders import EmbeddingFailed, EndpointEmbedder
from pipeline.kb.ingest import IngestProgress
from pipeline.kb.service import KnowledgeBase
from storage.kb_base import DocumentStatus, KbDocument, KnowledgeIndex, SearchMode
from storage.kb_documents import PostgresKbDocuments
from tests.kb.pdf_writer import encrypt_pdf, make_pdf


def package(root: Path) -> Path:
    kb = root / "shop.gbai" / "shop.gbkb"
    (kb / "faq").mkdir(parents=True)
    (kb / "manuals").mkdir()
    (kb / "faq" / "shipping.md").write_text("# Shipping\nParcels ship within two days.\n")
    (kb / "faq" / "returns.txt").write_text("Returns are accepted for thirty days.")
    (kb / "faq" / ".hidden.md").write_text("# Hidden\nnot indexed")
    (kb / "faq" / "image.png").write_bytes(b"\x89PNG not a document")
    (kb / "manuals" / "guide.pdf").write_bytes(
        make_pdf([["Warranty covers two years."], ["Batteries are excluded."]])
    )
    return root / "shop.gbai"


@pytest.fixture
def bot() -> str:
    return f"shop-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def documents(kb_pool: asyncpg.Pool) -> PostgresKbDocuments:
    return PostgresKbDocuments(kb_pool)


async def test_ingest_then_search_with_sources(
    kb_index: KnowledgeIndex, documents: PostgresKbDocuments, tmp_path: Path, bot: str
) -> None:
    kb = KnowledgeBase(kb_index, documents)
    seen: list[IngestProgress] = []
    report = await kb.ingest(bot, package(tmp_path), progress=seen.append)
    assert (report.indexed, report.unchanged, report.removed, report.skipped) == (3, 0, 0, [])
    assert report.pages == 2 and report.chunks == 4
    assert [(p.done, p.total) for p in seen] == [(1, 3), (2, 3), (3, 3)]
    assert {p.source for p in seen} == {"shipping.md", "returns.txt", "guide.pdf"}
    await kb.indexing()
    assert await kb.collections(bot) == ["faq", "manuals"]
    (best, *_) = await kb.search(bot, "do batteries have warranty coverage", limit=2)
    assert (best.collection, best.source, best.page) == ("manuals", "guide.pdf", 2)
    assert best.citation == "manuals/guide.pdf, p. 2"
    (best, *_) = await kb.search(bot, "how long does shipping take", collections=["faq"])
    assert best.citation == "faq/shipping.md (Shipping)"
    only_manuals = await kb.search(bot, "shipping warranty", collections=["manuals"], limit=5)
    assert only_manuals and {p.collection for p in only_manuals} == {"manuals"}
    rows = {(d.collection, d.source): d for d in await documents.list(bot)}
    assert rows[("manuals", "guide.pdf")].pages == 2
    assert all(
        d.status is DocumentStatus.INDEXED and len(d.content_hash) == 64 for d in rows.values()
    )


async def test_only_changed_files_are_read_again_and_deleted_ones_go(
    kb_index: KnowledgeIndex, documents: PostgresKbDocuments, tmp_path: Path, bot: str
) -> None:
    kb = KnowledgeBase(kb_index, documents)
    root = package(tmp_path)
    await kb.ingest(bot, root)
    report = await kb.ingest(bot, root)
    assert (report.indexed, report.unchanged, report.removed) == (0, 3, 0)

    faq = root / "shop.gbkb" / "faq"
    (faq / "shipping.md").write_text("# Shipping\nParcels now ship overnight by courier.\n")
    (faq / "returns.txt").unlink()
    (faq / "sub").mkdir()
    (faq / "sub" / "new.html").write_text("<h1>Gift cards</h1><p>Gift cards never expire.</p>")
    report = await kb.ingest(bot, root)
    assert (report.indexed, report.unchanged, report.removed) == (2, 1, 1)
    (gift,) = await kb.search(bot, "gift cards expire", limit=1)
    assert gift.source == "sub/new.html"
    gone = await kb.search(bot, "returns accepted thirty days", limit=10)
    assert "returns.txt" not in {h.source for h in gone}
    (top,) = await kb.search(bot, "courier overnight", limit=1)
    assert "overnight" in top.text
    assert {(d.collection, d.source) for d in await documents.list(bot)} == {
        ("faq", "shipping.md"),
        ("faq", "sub/new.html"),
        ("manuals", "guide.pdf"),
    }
    assert await kb_index.count(bot) == 4


async def test_corrupt_and_encrypted_pdfs_are_skipped_and_ingestion_goes_on(
    kb_index: KnowledgeIndex,
    documents: PostgresKbDocuments,
    tmp_path: Path,
    bot: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = package(tmp_path)
    manuals = root / "shop.gbkb" / "manuals"
    (manuals / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type")
    (manuals / "locked.pdf").write_bytes(encrypt_pdf(make_pdf([["Secret."]]), "pw"))
    kb = KnowledgeBase(kb_index, documents)
    with caplog.at_level(logging.WARNING, logger="pipeline.kb.ingest"):
        report = await kb.ingest(bot, root)
    assert report.indexed == 3
    (broken, broken_reason), (locked, locked_reason) = sorted(report.skipped)
    assert (broken, locked) == ("manuals/broken.pdf", "manuals/locked.pdf")
    assert broken_reason.startswith("not a readable PDF")
    assert locked_reason == "encrypted PDF: it needs a password"
    assert "locked.pdf skipped: encrypted PDF" in caplog.text
    rows = {d.source: d for d in await documents.list(bot)}
    assert rows["locked.pdf"].status is DocumentStatus.SKIPPED
    assert rows["locked.pdf"].error == "encrypted PDF: it needs a password"
    again = await kb.ingest(bot, root)  # the same unreadable bytes are not tried again
    assert (again.indexed, again.unchanged, again.skipped) == (0, 5, [])


async def test_an_interrupted_run_is_resumed(
    kb_index: KnowledgeIndex, documents: PostgresKbDocuments, tmp_path: Path, bot: str
) -> None:
    root = package(tmp_path)
    kb = KnowledgeBase(kb_index, documents)
    await kb.ingest(bot, root)
    # A run that died while indexing shipping.md left its row so, its chunks half written.
    rows = {d.source: d for d in await documents.list(bot)}
    shipping = rows["shipping.md"]
    await documents.put(
        bot,
        KbDocument(shipping.collection, "shipping.md", "new-hash", "", DocumentStatus.INDEXING),
    )
    report = await kb.ingest(bot, root)
    assert (report.indexed, report.unchanged) == (1, 2)
    rows = {d.source: d for d in await documents.list(bot)}
    assert rows["shipping.md"].status is DocumentStatus.INDEXED
    assert rows["shipping.md"].content_hash == shipping.content_hash


async def test_a_lost_index_is_rebuilt_from_the_files(
    documents: PostgresKbDocuments, tmp_path: Path, bot: str
) -> None:
    from tests.kb.conftest import open_index

    root = package(tmp_path)
    first = await open_index("edge", tmp_path / "one")
    await KnowledgeBase(first, documents).ingest(bot, root)
    await first.close()
    fresh = await open_index("edge", tmp_path / "two")  # an empty index, the rows still there
    kb = KnowledgeBase(fresh, documents)
    try:
        report = await kb.ingest(bot, root)
        assert report.indexed == 3
        assert await fresh.count(bot) == 4
    finally:
        await kb.close()


class Vectors:
    """An embeddings endpoint's stand-in: a bag-of-letters vector; can be told to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.failing:
            raise EmbeddingFailed("endpoint answered 503")
        return [[1.0 + t.lower().count(c) for c in "aeiou"] for t in texts]


async def test_embedding_model_changes_and_failures(
    kb_index: KnowledgeIndex, documents: PostgresKbDocuments, tmp_path: Path, bot: str
) -> None:
    root = package(tmp_path)
    endpoint = Vectors()
    embedder = EndpointEmbedder(endpoint, model="letters", dim=5)
    kb = KnowledgeBase(kb_index, documents)
    await kb.ingest(bot, root)
    with_model = KnowledgeBase(kb_index, documents, embedder_for=lambda b: _ready(embedder))
    report = await with_model.ingest(bot, root)  # the model changed: everything again
    assert report.indexed == 3 and endpoint.calls == 3
    assert {d.embedding_id for d in await documents.list(bot)} == {"letters:5"}
    dense = await with_model.search(bot, "aaaa", mode=SearchMode.DENSE, limit=1)
    assert len(dense) == 1

    (root / "shop.gbkb" / "faq" / "shipping.md").write_text("# Shipping\nChanged again.\n")
    endpoint.failing = True
    report = await with_model.ingest(bot, root)  # indexed lexically for now
    assert report.indexed == 1
    rows = {d.source: d for d in await documents.list(bot)}
    assert rows["shipping.md"].embedding_id == ""
    hits = await with_model.search(bot, "changed again")  # the question is not embedded either
    assert hits and hits[0].source == "shipping.md"
    endpoint.failing = False
    report = await with_model.ingest(bot, root)
    assert (report.indexed, report.unchanged) == (1, 2)


async def test_parsing_a_large_pdf_does_not_block_the_event_loop(
    documents: PostgresKbDocuments, tmp_path: Path, bot: str
) -> None:
    from tests.kb.conftest import open_index

    kb_dir = tmp_path / "big.gbai" / "big.gbkb" / "docs"
    kb_dir.mkdir(parents=True)
    lines = [f"Line {i} of the manual talks about channels and tokens." for i in range(40)]
    (kb_dir / "big.pdf").write_bytes(make_pdf([lines] * 400))
    index = await open_index("edge", tmp_path)
    kb = KnowledgeBase(index, documents)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        report = await kb.ingest(bot, tmp_path / "big.gbai")
    finally:
        done.set()
        await tick
        await kb.close()
    took = time.perf_counter() - started
    assert report.pages == 400 and took > 0.3
    # Parsed in a worker process, its chunks' terms made in a thread, the loop runs throughout;
    # parsed in a thread of this process, pypdf stalled it for over 0.5 s on a loaded machine.
    assert max(gaps) < min(0.25, took / 3), (max(gaps), took)


async def _ready(embedder: EndpointEmbedder) -> EndpointEmbedder:
    return embedder
