"""Knowledge-base benchmark: search latency at 10k and 100k chunks, dense recall, ingestion.

Run: .venv/bin/python -m bench.bench_kb [--sizes 10000,100000] [--queries 500] [--json]

Targets (issue 11): search p99 < 10 ms at 100k chunks on the embedded default,
recall@10 of the dense index >= 0.95 against exact search.

- Search: the embedded index (``storage.kb_edge.EdgeIndex``) filled with N
  chunks of one bot (plus N/10 of another bot, in its own shard), measured
  through its async ``search`` (thread hop included) after the background
  index build; lexical, dense and hybrid, p50/p99 in ms. Also while the
  build runs: search latency and the longest event-loop stall.
  Texts are drawn from a Zipf vocabulary, so common terms are common; the
  384-dim vectors are embedding-like (points around 2,000 topic centres, not
  uniform noise, which no index handles as real data), queries are near a
  stored chunk, as a question is near its answer.
- Recall@10: the dense results against an exact (numpy) scan of the same bot.
- qdrant-client's local mode at the smaller size, for comparison.
- Ingestion: chunks/s for markdown files (lexical only, and with the local
  model where installed), pages/s and peak memory (RSS above the start)
  while ingesting a 500-page PDF made here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.kb.embedders import Embedder
from pipeline.kb.ingest import ingest_bot
from pipeline.kb.local_embedder import load_local_embedder
from storage.kb_base import (
    IndexedChunk,
    KbDocument,
    KbQuery,
    KnowledgeIndex,
    SearchMode,
    VectorSpace,
)
from storage.kb_edge import EdgeIndex
from storage.kb_qdrant import QdrantIndex
from tests.kb.pdf_writer import make_pdf

DIM = 384
SPACE = VectorSpace("bench-embedding-like", DIM)
TOPICS = 2000
PER_SOURCE = 100
BOT, OTHER, COLLECTION = "bench", "other", "docs"


class RowsInMemory:
    """``kb_documents`` rows in a dict: the benchmark measures the index, not PostgreSQL."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], KbDocument] = {}

    async def list(self, bot: str) -> list[KbDocument]:
        return [d for (b, _, _), d in self.rows.items() if b == bot]

    async def put(self, bot: str, document: KbDocument) -> None:
        self.rows[(bot, document.collection, document.source)] = document

    async def remove(self, bot: str, collection: str, source: str) -> None:
        self.rows.pop((bot, collection, source), None)


class Corpus:
    """Embedding-like vectors and Zipf-distributed texts, reproducible from a seed."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        centres = self.rng.standard_normal((TOPICS, DIM)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.words = [f"term{i}" for i in range(20000)]
        ranks = np.arange(1, len(self.words) + 1)
        self.word_p = (1 / ranks) / (1 / ranks).sum()

    def vectors(self, n: int, spread: float = 0.7) -> np.ndarray:
        """Unit vectors around random topic centres (cosine to their centre ~0.8)."""
        topic = self.rng.integers(0, TOPICS, n)
        noise = self.rng.standard_normal((n, DIM)).astype(np.float32) * (spread / np.sqrt(DIM))
        v = self.centres[topic] + noise
        unit: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
        return unit

    def texts(self, n: int, n_words: int = 120) -> list[str]:
        drawn = self.rng.choice(len(self.words), (n, n_words), p=self.word_p)
        return [" ".join(self.words[w] for w in row) for row in drawn]


async def fill(index: KnowledgeIndex, corpus: Corpus, bot: str, n: int) -> np.ndarray:
    vectors = corpus.vectors(n)
    texts = corpus.texts(n)
    for start in range(0, n, PER_SOURCE):
        chunks = [
            IndexedChunk(
                i - start, texts[i], f"Heading {i // PER_SOURCE}", None, vectors[i].tolist()
            )
            for i in range(start, min(n, start + PER_SOURCE))
        ]
        source = f"doc{start // PER_SOURCE}.md"
        await index.replace_source(bot, COLLECTION, source, chunks, space=SPACE)
    return vectors


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, 3),
    }


async def timed(calls: list[Callable[[], Awaitable[object]]]) -> list[float]:
    for call in calls[:20]:  # warm caches and the thread pool
        await call()
    samples = []
    for call in calls:
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def bench_search(
    index: KnowledgeIndex, corpus: Corpus, vectors: np.ndarray, n_queries: int
) -> dict[str, object]:
    picks = corpus.rng.integers(0, len(vectors), n_queries)
    noise = corpus.rng.standard_normal((n_queries, DIM)).astype(np.float32) * 0.02
    queries = vectors[picks] + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    texts = corpus.texts(n_queries, 4)
    out: dict[str, object] = {}
    for mode in SearchMode:
        calls: list[Callable[[], Awaitable[object]]] = [
            partial(
                index.search,
                BOT,
                [COLLECTION],
                KbQuery(t, limit=10, mode=mode, vector=q.tolist(), space=SPACE),
            )
            for t, q in zip(texts, queries, strict=True)
        ]
        out[mode.value] = percentiles(await timed(calls))
    # Recall@10 of the dense index against an exact scan of the same bot's vectors.
    hits = 0
    total = 0
    ids = [f"doc{i // PER_SOURCE}.md#{i % PER_SOURCE}" for i in range(len(vectors))]
    for q in queries[: min(200, n_queries)]:
        exact = np.argsort(-(vectors @ q))[:10]
        query = KbQuery("", limit=10, mode=SearchMode.DENSE, vector=q.tolist(), space=SPACE)
        found = await index.search(BOT, [COLLECTION], query)
        got = {f"{h.source}#{h.ordinal}" for h in found}
        hits += len(got & {ids[i] for i in exact})
        total += 10
    out["dense_recall_at_10"] = round(hits / total, 4)
    return out


async def bench_size(n: int, n_queries: int, workdir: Path) -> dict[str, object]:
    corpus = Corpus(seed=n)
    index = await EdgeIndex.open(workdir / f"edge-{n}")
    try:
        started = time.perf_counter()
        vectors = await fill(index, corpus, BOT, n)
        await fill(index, corpus, OTHER, n // 10)
        written = time.perf_counter() - started
        # The index is built in the background: searches go on meanwhile (timed here).
        started = time.perf_counter()
        build = asyncio.create_task(index.optimize())
        during: list[float] = []
        probe = KbQuery(corpus.texts(1, 4)[0], limit=10, vector=vectors[0].tolist(), space=SPACE)
        loop_gap = 0.0
        while not build.done():
            t0 = time.perf_counter()
            await index.search(BOT, [COLLECTION], probe)
            during.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)
            loop_gap = max(loop_gap, time.perf_counter() - t0 - 0.01)
        await build
        built = time.perf_counter() - started
        result = await bench_search(index, corpus, vectors, n_queries)
        if during:
            result["hybrid_during_build"] = {
                **percentiles(during),
                "searches": len(during),
                "event_loop_max_stall_ms": round(loop_gap * 1000, 1),
            }
        result.update(
            chunks=n,
            write_s=round(written, 1),
            write_chunks_per_s=round(n * 1.1 / written),
            index_build_s=round(built, 1),
        )
        return result
    finally:
        await index.close()


async def bench_local_mode(n: int, n_queries: int) -> dict[str, object]:
    corpus = Corpus(seed=n)
    index = QdrantIndex.connect(":memory:")
    try:
        vectors = await fill(index, corpus, BOT, n)
        queries = [v.tolist() for v in vectors[: min(n_queries, 100)]]
        calls: list[Callable[[], Awaitable[object]]] = [
            partial(
                index.search,
                BOT,
                [COLLECTION],
                KbQuery("", limit=10, mode=SearchMode.DENSE, vector=q, space=SPACE),
            )
            for q in queries
        ]
        return {"chunks": n, "dense": percentiles(await timed(calls))}
    finally:
        await index.close()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


BUNDLED_KB = Path(__file__).resolve().parents[1] / "templates" / "default.gbai"


async def bench_ingestion(workdir: Path, embedder: Embedder | None) -> dict[str, object]:
    rng = random.Random(3)
    words = " ".join(p.read_text() for p in BUNDLED_KB.rglob("*.md")).split()
    out: dict[str, object] = {}
    # The local model embeds ~100 times slower than the rest ingests: it gets fewer files.
    for label, model, files in (("lexical", None, 200), ("local_model", embedder, 20)):
        if label == "local_model" and model is None:
            continue
        md = workdir / f"md-{label}.gbai" / f"md-{label}.gbkb" / "docs"
        md.mkdir(parents=True)
        for i in range(files):
            body = "\n\n".join(" ".join(rng.choices(words, k=80)) + "." for _ in range(12))
            (md / f"doc{i}.md").write_text(f"# Document {i}\n\n{body}\n")
        index = await EdgeIndex.open(workdir / f"ingest-{label}")
        try:
            report = await ingest_bot(
                f"md-{label}", md.parent, index=index, documents=RowsInMemory(), embedder=model
            )
        finally:
            await index.close()
        out[f"markdown_{label}"] = {
            "files": report.indexed,
            "chunks": report.chunks,
            "chunks_per_s": round(report.chunks / report.seconds),
        }
    pdf_dir = workdir / "pdf.gbai" / "pdf.gbkb" / "manuals"
    pdf_dir.mkdir(parents=True)
    pages = [[" ".join(rng.choices(words, k=12)) for _ in range(45)] for _ in range(500)]
    (pdf_dir / "manual.pdf").write_bytes(make_pdf(pages))
    size = (pdf_dir / "manual.pdf").stat().st_size
    index = await EdgeIndex.open(workdir / "ingest-pdf")
    base = rss_bytes()
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        report = await ingest_bot(
            "pdf", pdf_dir.parent, index=index, documents=RowsInMemory(), embedder=None
        )
    finally:
        stop.set()
        sampler.join()
        await index.close()
    out["pdf_500_pages"] = {
        "file_mb": round(size / 1e6, 1),
        "pages_per_s": round(report.pages / report.seconds),
        "chunks_per_s": round(report.chunks / report.seconds),
        "peak_rss_above_start_mb": round((peak - base) / 2**20, 1),
        "rss_at_start_mb": round(base / 2**20, 1),
    }
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-kb-") as tmp:
        workdir = Path(tmp)
        for n in sizes:
            results[f"edge_{n}"] = await bench_size(n, args.queries, workdir)
            if not args.json:
                print(f"edge {n}: {json.dumps(results[f'edge_{n}'])}", flush=True)
        results["qdrant_local_mode"] = await bench_local_mode(min(sizes), args.queries)
        if not args.json:
            print(f"qdrant local mode: {json.dumps(results['qdrant_local_mode'])}", flush=True)
        results["ingestion"] = await bench_ingestion(workdir, load_local_embedder())
        if not args.json:
            print(f"ingestion: {json.dumps(results['ingestion'])}", flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
