"""A bot's own embeddings endpoint: its chunks and questions embedded there through the
real ``openai`` SDK against the fake server; other bots keep the local model; an endpoint
that is down leaves the bot lexical until it answers again."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pipeline.kb.bot_embedders import BotEmbedders
from pipeline.kb.embedders import EndpointEmbedder
from pipeline.kb.service import KnowledgeBase
from storage.kb_base import KnowledgeIndex, SearchMode
from storage.kb_documents import PostgresKbDocuments
from tests.llm.fake_openai import API_KEY, FakeOpenAI, embedding_of


async def _never(texts: list[str]) -> list[list[float]]:
    raise AssertionError("the local model was used")


LOCAL = EndpointEmbedder(_never, model="local", dim=4)


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


def shop(root: Path) -> Path:
    kb = root / "shop.gbai" / "shop.gbkb" / "faq"
    kb.mkdir(parents=True)
    (kb / "shipping.md").write_text("# Shipping\nParcels ship within two days.\n")
    (kb / "returns.txt").write_text("Returns are accepted for thirty days, no questions asked.")
    return root / "shop.gbai"


def endpoint_rows(server: FakeOpenAI, model: str = "text-embed-test") -> dict[str, str]:
    return {"embedding-url": f"{server.url}/v1", "embedding-key": API_KEY, "embedding-model": model}


async def test_a_bot_naming_an_endpoint_embeds_its_chunks_and_questions_there(
    kb_index: KnowledgeIndex, kb_pool: asyncpg.Pool, tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    bot, other = f"shop-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    configs = {bot: endpoint_rows(openai_server), other: {}}
    embedders = BotEmbedders(LOCAL, configs.get, environ={})
    documents = PostgresKbDocuments(kb_pool)
    kb = KnowledgeBase(kb_index, documents, embedder_for=embedders)
    assert await embedders(other) is LOCAL and await embedders("not-loaded") is LOCAL

    report = await kb.ingest(bot, shop(tmp_path))
    assert report.indexed == 2
    assert {d.embedding_id for d in await documents.list(bot)} == {"text-embed-test:3"}
    calls = [c for c in openai_server.calls if c.path == "/v1/embeddings"]
    assert calls and all(c.body["model"] == "text-embed-test" for c in calls)
    assert all(c.headers["Authorization"] == f"Bearer {API_KEY}" for c in calls)
    chunk_texts = [t for c in calls[1:] for t in c.body["input"]]  # the first was the probe
    assert any("thirty days" in t for t in chunk_texts)

    question = "Returns are accepted for thirty days, no questions asked."
    before = len(openai_server.calls)
    [hit] = await kb.search(bot, question, mode=SearchMode.DENSE, limit=1)
    assert hit.source == "returns.txt"
    [asked] = openai_server.calls[before:]
    assert asked.body["input"] == [question]
    assert embedding_of(question)  # the fake's vectors: what the index compared
    await embedders.close()


async def test_an_endpoint_that_is_down_leaves_the_bot_lexical_until_it_answers(
    kb_index: KnowledgeIndex,
    kb_pool: asyncpg.Pool,
    tmp_path: Path,
    openai_server: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = f"shop-{uuid.uuid4().hex[:8]}"
    embedders = BotEmbedders(LOCAL, {bot: endpoint_rows(openai_server)}.get, retry_after=0.0)
    documents = PostgresKbDocuments(kb_pool)
    kb = KnowledgeBase(kb_index, documents, embedder_for=embedders)
    package = shop(tmp_path)
    openai_server.embeddings_down = True
    with caplog.at_level(logging.WARNING, logger="pipeline.kb.bot_embedders"):
        report = await kb.ingest(bot, package)
    assert report.indexed == 2
    assert {d.embedding_id for d in await documents.list(bot)} == {""}  # lexical for now
    assert "did not answer" in caplog.text
    lexical = await kb.search(bot, "thirty days")
    assert [p.source for p in lexical][:1] == ["returns.txt"]

    openai_server.embeddings_down = False
    report = await kb.ingest(bot, package)  # the endpoint is back: every file embedded
    assert (report.indexed, report.unchanged) == (2, 0)
    assert {d.embedding_id for d in await documents.list(bot)} == {"text-embed-test:3"}
    await embedders.close()


async def test_wrong_embedding_rows_keep_the_local_model_with_the_reason_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = {"embedding-url": "https://embeddings.example.com/v1", "embedding-model": "m"}
    embedders = BotEmbedders(LOCAL, {"shop": rows}.get, environ={})
    with caplog.at_level(logging.WARNING, logger="pipeline.kb.bot_embedders"):
        assert await embedders("shop") is LOCAL
        assert await embedders("shop") is LOCAL
    assert caplog.text.count("has no embedding-key") == 1  # logged once per change


async def test_a_changed_model_opens_a_new_endpoint(openai_server: FakeOpenAI) -> None:
    configs = {"shop": endpoint_rows(openai_server, "model-a")}
    embedders = BotEmbedders(None, configs.get, environ={})
    first = await embedders("shop")
    assert first is not None and first.space.model == "model-a"
    assert await embedders("shop") is first  # probed once
    configs["shop"] = endpoint_rows(openai_server, "model-b")
    second = await embedders("shop")
    assert second is not None and second.space.model == "model-b"
    configs["shop"] = {}
    assert await embedders("shop") is None  # no endpoint, no local model: lexical
    await embedders.close()
