"""Retrieval quality over the bundled bot's knowledge base: recall@5 by search mode.

Ingests ``templates/default.gbai`` (its ``default.gbkb/botserver`` documents)
into the embedded index and asks the labelled questions of ``questions.py``.
A question counts as recalled when one of the five passages comes from a file
that answers it. Dense and hybrid run where the local model is installed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pipeline.kb.embedders import Embedder
from pipeline.kb.local_embedder import load_local_embedder
from pipeline.kb.service import KnowledgeBase
from storage.kb_base import SearchMode
from storage.kb_documents import PostgresKbDocuments
from storage.kb_edge import EdgeIndex
from tests.kb.questions import QUESTIONS

PACKAGE = Path(__file__).resolve().parents[2] / "templates" / "default.gbai"
EMBEDDER = load_local_embedder()

FLOORS = {SearchMode.LEXICAL: 0.80, SearchMode.DENSE: 0.85, SearchMode.HYBRID: 0.90}


@pytest.fixture(scope="module")
async def bundled_kb(
    kb_pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[KnowledgeBase, str]]:
    index = await EdgeIndex.open(tmp_path_factory.mktemp("quality") / "edge")
    kb = KnowledgeBase(index, PostgresKbDocuments(kb_pool), embedder_for=_embedder)
    bot = f"default-{uuid.uuid4().hex[:8]}"
    report = await kb.ingest(bot, PACKAGE)
    assert report.indexed >= 15 and not report.skipped
    yield kb, bot
    await kb.close()


async def _embedder(bot: str) -> Embedder | None:
    return EMBEDDER


async def recall(kb: KnowledgeBase, bot: str, mode: SearchMode) -> tuple[float, float, list[str]]:
    """recall@5, recall@1 and the questions missed at 5."""
    missed, first = [], 0
    for question, answers in QUESTIONS:
        found = [p.source for p in await kb.search(bot, question, limit=5, mode=mode)]
        first += bool(found) and found[0] in answers
        if not set(found) & answers:
            missed.append(question)
    return 1 - len(missed) / len(QUESTIONS), first / len(QUESTIONS), missed


@pytest.mark.parametrize("mode", list(SearchMode))
async def test_recall_at_5(bundled_kb: tuple[KnowledgeBase, str], mode: SearchMode) -> None:
    if mode is not SearchMode.LEXICAL and EMBEDDER is None:
        pytest.skip("the local embedding model is not installed")
    kb, bot = bundled_kb
    at5, at1, missed = await recall(kb, bot, mode)
    print(f"\n{mode.value}: recall@5 {at5:.2f}, recall@1 {at1:.2f} ({len(QUESTIONS)} questions)")
    assert at5 >= FLOORS[mode], missed


async def test_passages_carry_their_source(bundled_kb: tuple[KnowledgeBase, str]) -> None:
    kb, bot = bundled_kb
    (best, *_) = await kb.search(bot, "Where do I put the token BotFather gave me?")
    assert best.collection == "botserver" and best.source == "telegram.md"
    assert best.heading.startswith("Connecting a bot to Telegram")
    assert best.citation.startswith("botserver/telegram.md (Connecting a bot to Telegram")
