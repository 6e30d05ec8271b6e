"""The knowledge-index contract, run on every backend (see conftest.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from storage.kb_base import IndexedChunk, KbQuery, KnowledgeIndex, SearchMode, VectorSpace
from tests.kb.conftest import open_index

SPACE = VectorSpace("test-model", 4)


def unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


DOCS = {
    "telegram.md": [
        IndexedChunk(0, "Set the telegram-bot-token row to the token BotFather gave.", "Telegram",
                     vector=unit(1, 0, 0, 0)),
        IndexedChunk(1, "Polling mode helps during development without a public URL.", "Telegram",
                     vector=unit(0.9, 0.1, 0, 0)),
    ],
    "whatsapp.md": [
        IndexedChunk(0, "WhatsApp needs the Meta app secret and a verify token.", "WhatsApp",
                     vector=unit(0, 1, 0, 0)),
    ],
    "manual.pdf": [
        IndexedChunk(0, "Configuring providers: write the llm-key row.", "Providers", page=7,
                     vector=unit(0, 0, 1, 0)),
    ],
}  # fmt: skip


async def load(index: KnowledgeIndex, bot: str = "alpha", collection: str = "docs") -> None:
    for source, chunks in DOCS.items():
        await index.replace_source(bot, collection, source, chunks, space=SPACE)


def sources(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [h.source for h in hits]


async def test_lexical_search_finds_words_and_their_stems(kb_index: KnowledgeIndex) -> None:
    await load(kb_index)
    hits = await kb_index.search("alpha", ["docs"], KbQuery("configure a provider", limit=3))
    assert sources(hits)[0] == "manual.pdf"
    top = hits[0]
    assert (top.collection, top.page, top.heading, top.ordinal) == ("docs", 7, "Providers", 0)
    assert "llm-key" in top.text
    hits = await kb_index.search("alpha", ["docs"], KbQuery("BotFather token", limit=3))
    assert sources(hits)[0] == "telegram.md"


async def test_dense_search_ranks_by_vector(kb_index: KnowledgeIndex) -> None:
    await load(kb_index)
    query = KbQuery("zzz", limit=2, mode=SearchMode.DENSE, vector=unit(0.1, 1, 0, 0), space=SPACE)
    hits = await kb_index.search("alpha", ["docs"], query)
    assert sources(hits)[0] == "whatsapp.md"
    assert hits[0].score > hits[1].score


async def test_hybrid_search_fuses_both_rankings(kb_index: KnowledgeIndex) -> None:
    await load(kb_index)
    # The words point at the manual, the vector at WhatsApp: both come first two.
    query = KbQuery("llm-key provider", limit=2, vector=unit(0, 1, 0, 0), space=SPACE)
    hits = await kb_index.search("alpha", ["docs"], query)
    assert set(sources(hits)) == {"manual.pdf", "whatsapp.md"}
    lexical_only = KbQuery("llm-key provider", limit=2, mode=SearchMode.LEXICAL,
                           vector=unit(0, 1, 0, 0), space=SPACE)  # fmt: skip
    assert "whatsapp.md" not in sources(await kb_index.search("alpha", ["docs"], lexical_only))


async def test_hybrid_without_a_vector_is_lexical(kb_index: KnowledgeIndex) -> None:
    await load(kb_index)
    hits = await kb_index.search("alpha", ["docs"], KbQuery("verify token secret", limit=1))
    assert sources(hits) == ["whatsapp.md"]
    dense = KbQuery("verify token secret", mode=SearchMode.DENSE)
    assert await kb_index.search("alpha", ["docs"], dense) == []


async def test_bots_and_collections_never_mix(kb_index: KnowledgeIndex) -> None:
    await load(kb_index, "alpha", "docs")
    await kb_index.replace_source(
        "beta", "docs", "secret.md", [IndexedChunk(0, "beta's private telegram token notes")]
    )
    await kb_index.replace_source(
        "alpha", "other", "other.md", [IndexedChunk(0, "telegram notes in another collection")]
    )
    hits = await kb_index.search("alpha", ["docs"], KbQuery("telegram token notes", limit=10))
    assert "secret.md" not in sources(hits) and "other.md" not in sources(hits)
    hits = await kb_index.search("beta", ["docs"], KbQuery("telegram token", limit=10))
    assert sources(hits) == ["secret.md"]
    both = await kb_index.search("alpha", ["docs", "other"], KbQuery("telegram notes", limit=10))
    assert "other.md" in sources(both)
    assert await kb_index.search("alpha", [], KbQuery("telegram")) == []
    assert await kb_index.search("nobody", ["docs"], KbQuery("telegram")) == []
    assert await kb_index.count("alpha") == 5
    assert await kb_index.count("alpha", "docs") == 4
    assert await kb_index.count("beta") == 1


async def test_replacing_a_source_drops_its_old_chunks(kb_index: KnowledgeIndex) -> None:
    await load(kb_index)
    await kb_index.replace_source(
        "alpha", "docs", "telegram.md", [IndexedChunk(0, "Telegram webhooks use a secret header.")]
    )
    assert await kb_index.count("alpha", "docs") == 3
    hits = await kb_index.search("alpha", ["docs"], KbQuery("polling development", limit=5))
    assert "telegram.md" not in sources(hits)
    hits = await kb_index.search("alpha", ["docs"], KbQuery("webhooks secret header", limit=1))
    assert sources(hits) == ["telegram.md"] and hits[0].text.startswith("Telegram webhooks")
    await kb_index.replace_source("alpha", "docs", "telegram.md", [])
    assert await kb_index.count("alpha", "docs") == 2


async def test_deleting_a_source(kb_index: KnowledgeIndex) -> None:
    await load(kb_index)
    await kb_index.delete_source("alpha", "docs", "whatsapp.md")
    await kb_index.delete_source("alpha", "docs", "never-indexed.md")
    assert await kb_index.count("alpha", "docs") == 3
    hits = await kb_index.search("alpha", ["docs"], KbQuery("whatsapp meta verify", limit=5))
    assert "whatsapp.md" not in sources(hits)


async def test_search_still_answers_during_and_after_an_index_build(
    kb_index: KnowledgeIndex,
) -> None:
    await load(kb_index)
    await kb_index.optimize()
    hits = await kb_index.search("alpha", ["docs"], KbQuery("BotFather", limit=1))
    assert sources(hits) == ["telegram.md"]


async def test_a_new_embedding_space_replaces_the_old_vectors(kb_index: KnowledgeIndex) -> None:
    await load(kb_index)
    other = VectorSpace("other-model", 3)
    for source, chunks in DOCS.items():
        moved = [IndexedChunk(c.ordinal, c.text, c.heading, c.page, vector=[1.0, 0.0, 0.0])
                 for c in chunks]  # fmt: skip
        await kb_index.replace_source("alpha", "docs", source, moved, space=other)
    query = KbQuery("x", limit=4, mode=SearchMode.DENSE, vector=[1.0, 0.0, 0.0], space=other)
    assert len(await kb_index.search("alpha", ["docs"], query)) == 4
    old = KbQuery("x", limit=4, mode=SearchMode.DENSE, vector=unit(1, 0, 0, 0), space=SPACE)
    assert len(await kb_index.search("alpha", ["docs"], old)) < 4


@pytest.mark.parametrize("kind", ["edge"])
async def test_the_embedded_index_persists(kind: str, tmp_path: Path) -> None:
    index = await open_index(kind, tmp_path)
    await load(index)
    await index.close()
    index = await open_index(kind, tmp_path)
    try:
        assert await index.count("alpha") == 4
        hits = await index.search("alpha", ["docs"], KbQuery("BotFather", limit=1))
        assert sources(hits) == ["telegram.md"]
        query = KbQuery("x", limit=1, mode=SearchMode.DENSE, vector=unit(0, 0, 1, 0), space=SPACE)
        assert sources(await index.search("alpha", ["docs"], query)) == ["manual.pdf"]
    finally:
        await index.close()


async def test_the_embedded_index_survives_builds_and_restarts(tmp_path: Path) -> None:
    index = await open_index("edge", tmp_path)
    await load(index)
    await index.optimize()  # built in a child process, swapped in
    await index.replace_source(
        "alpha", "docs", "late.md", [IndexedChunk(0, "Written after the build.")]
    )
    await index.close()
    index = await open_index("edge", tmp_path)
    try:
        assert await index.count("alpha") == 5
        hits = await index.search("alpha", ["docs"], KbQuery("BotFather", limit=1))
        assert sources(hits) == ["telegram.md"]
        query = KbQuery("x", limit=1, mode=SearchMode.DENSE, vector=unit(0, 0, 1, 0), space=SPACE)
        assert sources(await index.search("alpha", ["docs"], query)) == ["manual.pdf"]
        assert sources(await index.search("alpha", ["docs"], KbQuery("written after"))) == [
            "late.md"
        ]
    finally:
        await index.close()
    leftovers = [
        p.name for p in (tmp_path / "edge").iterdir() if p.name.endswith((".build", ".old"))
    ]
    assert leftovers == []
