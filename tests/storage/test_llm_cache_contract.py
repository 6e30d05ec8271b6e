"""LLM answer store contract: one suite, every backend (in-process, Redis)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from storage.llm_cache_base import AnswerStore, CachedAnswer
from storage.llm_cache_memory import MemoryAnswers
from storage.llm_cache_redis import RedisAnswers

DIM = 8


@pytest.fixture
def answers(backend: str, request: pytest.FixtureRequest, redis_prefix: str) -> AnswerStore:
    if backend == "memory":
        return MemoryAnswers()
    return RedisAnswers(request.getfixturevalue("redis_client"), prefix=redis_prefix)


def unit(*values: float) -> list[float]:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return (vector / np.linalg.norm(vector)).tolist()


def entry(question: str, answer: str = "an answer") -> CachedAnswer:
    return CachedAnswer(question=question, answer=answer, created=1_760_000_000.5)


async def put(
    store: AnswerStore,
    key: str,
    question: str,
    vector: list[float] | None,
    *,
    bot: str = "bot",
    scope: str = "s1",
    ttl: float = 60,
    max_similar: int = 100,
) -> None:
    await store.put(
        bot,
        scope,
        key,
        entry(question, f"answer to {question}"),
        vector=vector,
        ttl=ttl,
        max_similar=max_similar,
    )


async def test_knowledge_base_versions_count_per_bot(answers: AnswerStore) -> None:
    assert await answers.kb_version("bot-a") == 0
    assert await answers.bump_kb_version("bot-a") == 1
    assert await answers.bump_kb_version("bot-a") == 2
    assert await answers.kb_version("bot-a") == 2
    assert await answers.kb_version("bot-b") == 0


async def test_an_entry_is_found_by_its_key_in_its_scope_only(answers: AnswerStore) -> None:
    assert await answers.get("bot", "s1", "k") is None
    await put(answers, "k", "What are your hours? 🕘 olá", None)
    found = await answers.get("bot", "s1", "k")
    assert found == CachedAnswer(
        "What are your hours? 🕘 olá", "answer to What are your hours? 🕘 olá", 1_760_000_000.5
    )
    assert await answers.get("bot", "s2", "k") is None
    assert await answers.get("other-bot", "s1", "k") is None
    assert await answers.get("bot", "s1", "k2") is None
    await put(answers, "k", "again", None)  # the same key again: replaced
    found = await answers.get("bot", "s1", "k")
    assert found is not None and found.question == "again"


async def test_similar_entries_come_best_first_above_the_threshold(answers: AnswerStore) -> None:
    await put(answers, "k1", "close", unit(1, 0.1))
    await put(answers, "k2", "closest", unit(1, 0.01))
    await put(answers, "k3", "far", unit(0, 1))
    found = await answers.similar("bot", "s1", unit(1), threshold=0.9, limit=5)
    assert [m.entry.question for m in found] == ["closest", "close"]
    assert found[0].score == pytest.approx(0.99995, abs=1e-4)
    assert found[0].score >= found[1].score >= 0.9
    assert found[0].entry.answer == "answer to closest"
    limited = await answers.similar("bot", "s1", unit(1), threshold=0.0, limit=1)
    assert [m.entry.question for m in limited] == ["closest"]
    assert await answers.similar("bot", "s1", unit(1), threshold=0.99999, limit=5) == []


async def test_similar_entries_are_scoped_by_bot_and_scope(answers: AnswerStore) -> None:
    await put(answers, "k", "mine", unit(1))
    assert await answers.similar("bot", "s2", unit(1), threshold=0.5, limit=5) == []
    assert await answers.similar("bot-b", "s1", unit(1), threshold=0.5, limit=5) == []
    assert len(await answers.similar("bot", "s1", unit(1), threshold=0.5, limit=5)) == 1


async def test_an_entry_stored_without_a_vector_is_exact_only(answers: AnswerStore) -> None:
    await put(answers, "k", "exact only", None)
    assert await answers.get("bot", "s1", "k") is not None
    assert await answers.similar("bot", "s1", unit(1), threshold=0.0, limit=5) == []


async def test_vectors_of_another_dimension_never_match(answers: AnswerStore) -> None:
    await put(answers, "k", "eight", unit(1))
    assert await answers.similar("bot", "s1", [1.0, 0.0, 0.0], threshold=0.0, limit=5) == []


async def test_a_scope_keeps_its_newest_similar_entries(answers: AnswerStore) -> None:
    for i in range(5):
        await put(answers, f"k{i}", f"q{i}", unit(1, i / 100), max_similar=3)
    found = await answers.similar("bot", "s1", unit(1), threshold=0.0, limit=10)
    assert sorted(m.entry.question for m in found) == ["q2", "q3", "q4"]
    assert await answers.get("bot", "s1", "k0") is not None  # the exact tier keeps its own


async def test_entries_expire_after_their_ttl(answers: AnswerStore) -> None:
    await put(answers, "short", "short", unit(1), ttl=0.15)
    await put(answers, "long", "long", unit(1, 0.2), ttl=30)
    assert await answers.get("bot", "s1", "short") is not None
    await asyncio.sleep(0.3)
    assert await answers.get("bot", "s1", "short") is None
    found = await answers.similar("bot", "s1", unit(1), threshold=0.0, limit=5)
    assert [m.entry.question for m in found] == ["long"]
    assert await answers.get("bot", "s1", "long") is not None


async def test_the_in_process_store_is_bounded() -> None:
    store = MemoryAnswers(max_entries=10)
    for i in range(25):
        await put(store, f"k{i}", f"q{i}", unit(1, i / 100), scope=f"scope-{i % 5}")
    assert await store.get("bot", "scope-0", "k0") is None  # the oldest went first
    assert await store.get("bot", "scope-4", "k24") is not None
    kept = [
        m
        for s in range(5)
        for m in await store.similar("bot", f"scope-{s}", unit(1), threshold=0, limit=100)
    ]
    assert len(kept) <= 10
    assert "q24" in {m.entry.question for m in kept}
