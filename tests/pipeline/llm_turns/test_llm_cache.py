"""The semantic cache through the real LLM stage: the fake OpenAI server answers once, and a
second user asking the same (or nearly the same) question gets the answer with no model call.

Each test has a cache of its own (in-process, or the real Redis at 127.0.0.1:6379 under a
prefix of its own) with the packaged local embedding model; the bots are small packages
written here, or the test bots of tests/bots.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from channels.base import InboundMessage
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.kb.embedders import Embedder
from pipeline.kb.local_embedder import load_local_embedder
from pipeline.kb.service import KnowledgeBase
from pipeline.knowledge import PackageIngester, knowledge_search
from pipeline.llm_cache import CacheCounters, LLMCache, stream_pieces
from pipeline.services import Services
from storage.base import HistoryEntry
from storage.kb_documents import PostgresKbDocuments
from storage.kb_qdrant import QdrantIndex
from storage.llm_cache_base import AnswerStore
from storage.llm_cache_memory import MemoryAnswers
from storage.llm_cache_redis import RedisAnswers
from storage.services import Stores
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer, ToolUse
from tests.pipeline.llm_turns.conftest import FAST, Chat, LoadBots, Sink, environment

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
History = Callable[[str], Awaitable[list[HistoryEntry]]]
Registries = Callable[..., Awaitable[BotRegistry]]
BOTH = pytest.mark.parametrize("answers", ["memory", "redis"], indirect=True)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    found = load_local_embedder()
    if found is None:
        pytest.skip("the local embedding model (the local-model extra) is not installed")
    return found


@pytest.fixture
async def answers(request: pytest.FixtureRequest) -> AsyncIterator[AnswerStore]:
    """An empty answer store: in-process unless the test asks for ``"redis"``."""
    if getattr(request, "param", "memory") == "memory":
        yield MemoryAnswers()
        return
    prefix = f"test:llmcache:{uuid.uuid4().hex[:8]}:"
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as e:
        pytest.fail(f"Redis at {REDIS_URL} is unreachable ({e}); start it first")
    yield RedisAnswers(client, prefix=prefix)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def llm_cache(answers: AnswerStore, embedder: Embedder) -> LLMCache:
    return LLMCache(answers, embedder=embedder)


@pytest.fixture
def services(services: Services, llm_cache: LLMCache) -> Services:
    """The turns' services, with this test's cache (``chat`` uses them)."""
    return replace(services, llm_cache=llm_cache)


def write_bot(
    root: Path,
    name: str,
    *,
    rows: dict[str, str] | None = None,
    prompt: str | None = None,
    start: str | None = None,
    documents: dict[str, str] | None = None,
) -> Path:
    """A package ``root/name.gbai``: config rows (the cache on unless they say otherwise),
    a PROMPT.md, a start.bas, knowledge-base documents (``.gbkb/docs/<file>``)."""
    package = root / f"{name}.gbai"
    gbot = package / f"{name}.gbot"
    gbot.mkdir(parents=True, exist_ok=True)
    config = {"llm-cache": "true", **(rows or {})}
    (gbot / "config.csv").write_text(
        "name,value\n" + "".join(f"{k},{v}\n" for k, v in config.items())
    )
    if prompt is not None:
        (gbot / "PROMPT.md").write_text(prompt)
    if start is not None:
        dialogs = package / f"{name}.gbdialog"
        dialogs.mkdir(exist_ok=True)
        (dialogs / "start.bas").write_text(start)
    for file, text in (documents or {}).items():
        docs = package / f"{name}.gbkb" / "docs"
        docs.mkdir(parents=True, exist_ok=True)
        (docs / file).write_text(text)
    return package


@pytest.fixture
async def registries(stores: Stores) -> AsyncIterator[Registries]:
    """``await registries(root, server, model="gpt-4o")``: the bots of ``root`` on ``server``."""
    opened: list[BotRegistry] = []

    async def load(root: Path, server: FakeOpenAI, *, model: str = "gpt-4o") -> BotRegistry:
        environ = {**environment(server), "LLM_MODEL": model}
        registry = BotRegistry(root, tables=stores.tables, environ=environ, llm_policy=FAST)
        await registry.load_all()
        opened.append(registry)
        return registry

    yield load
    for registry in opened:
        await registry.close()


def counters(cache: LLMCache, bot: str) -> dict[str, object]:
    return cache.counters(bot).as_json()


# -- the two tiers ---------------------------------------------------------------------------


@BOTH
async def test_the_same_question_again_is_answered_from_the_exact_tier(
    openai_server: FakeOpenAI,
    registries: Registries,
    chat: Chat,
    history: History,
    llm_cache: LLMCache,
    tmp_path: Path,
) -> None:
    write_bot(tmp_path, "shop")
    registry = await registries(tmp_path, openai_server)
    answer = "We open at 9:00 and close at 18:00, Monday to Saturday."
    openai_server.script(
        Answer(text=("We open at 9:00 ", "and close at 18:00, ", "Monday to Saturday."))
    )
    first = await chat(registry, "shop")("What are your opening hours?")
    assert first.replies == [answer]

    second = await chat(registry, "shop")("what are your  opening hours")  # another user
    assert second.replies == [answer]
    assert len(openai_server.calls) == 1  # no second model request
    assert "".join(second.deltas) == answer  # it streams, as the model's answer did
    assert second.deltas == stream_pieces(answer) and len(second.deltas) > 1
    assert second.sink.events[-1] == ("message", answer)  # the deltas, then the message
    assert [(r.role, r.content, r.tokens_used) for r in await history(second.session_id)] == [
        ("user", "what are your  opening hours", 0),
        ("assistant", answer, 0),  # a cached answer costs no tokens
    ]
    assert (await history(first.session_id))[-1].tokens_used == 11 + 7
    assert (
        counters(llm_cache, "shop")
        == CacheCounters(exact_hits=1, exact_misses=1, similar_misses=1, stored=1).as_json()
    )


@BOTH
async def test_a_near_identical_question_is_answered_from_the_similarity_tier(
    openai_server: FakeOpenAI,
    registries: Registries,
    chat: Chat,
    llm_cache: LLMCache,
    tmp_path: Path,
) -> None:
    write_bot(tmp_path, "shop")
    registry = await registries(tmp_path, openai_server)
    openai_server.script(Answer(text=("Use the Forgot password link on the sign-in page.",)))
    await chat(registry, "shop")("How do I reset my password?")
    again = await chat(registry, "shop")("how can I reset my password")
    assert again.replies == ["Use the Forgot password link on the sign-in page."]
    assert len(openai_server.calls) == 1
    assert "".join(again.deltas) == again.replies[0]
    state = counters(llm_cache, "shop")
    assert state["exact"] == {"hits": 0, "misses": 2}
    assert state["similar"] == {"hits": 1, "misses": 1, "refused": 0}


async def test_a_question_of_opposite_meaning_is_asked_to_the_model(
    openai_server: FakeOpenAI,
    registries: Registries,
    chat: Chat,
    llm_cache: LLMCache,
    tmp_path: Path,
) -> None:
    write_bot(tmp_path, "shop")
    registry = await registries(tmp_path, openai_server)
    openai_server.script(
        Answer(text=("Yes: open Orders and press Cancel.",)),
        Answer(text=("Orders that have shipped cannot be cancelled.",)),
        Answer(text=("A table for 2 is booked.",)),
        Answer(text=("A table for 3 is booked.",)),
    )
    assert (await chat(registry, "shop")("can I cancel my order")).replies == [
        "Yes: open Orders and press Cancel."
    ]
    # at a cosine of 0.98: near enough for the threshold, turned down by the guard
    assert (await chat(registry, "shop")("can I not cancel my order")).replies == [
        "Orders that have shipped cannot be cancelled."
    ]
    await chat(registry, "shop")("book a table for 2 people please")
    assert (await chat(registry, "shop")("book a table for 3 people please")).replies == [
        "A table for 3 is booked."
    ]
    assert len(openai_server.calls) == 4
    state = counters(llm_cache, "shop")
    assert state["similar"]["hits"] == 0  # type: ignore[index]
    assert state["similar"]["refused"] >= 1  # type: ignore[index]


# -- what a cached answer is valid for -------------------------------------------------------


async def _reload(registry: BotRegistry, name: str) -> None:
    assert await registry.reload(name) is not None


@pytest.mark.parametrize(
    "change", ["other bot", "other model", "other system prompt", "other context"]
)
async def test_an_answer_is_only_reused_in_its_own_scope(
    openai_server: FakeOpenAI,
    registries: Registries,
    chat: Chat,
    tmp_path: Path,
    change: str,
) -> None:
    start = 'SET CONTEXT "offer" AS "10% off every order this week."\n'
    write_bot(tmp_path, "shop", prompt="You are the shop's assistant.", start=start)
    write_bot(tmp_path, "shop-two", prompt="You are the shop's assistant.", start=start)
    registry = await registries(tmp_path, openai_server)
    question = "Is there a discount this week?"
    openai_server.script(Answer(text=("Yes: 10% off.",)))
    await chat(registry, "shop")(question)
    assert len(openai_server.calls) == 1

    bot, asking = "shop", registry
    if change == "other bot":
        bot = "shop-two"
    elif change == "other model":
        asking = await registries(tmp_path, openai_server, model="gpt-4o-mini")
    elif change == "other system prompt":
        (tmp_path / "shop.gbai" / "shop.gbot" / "PROMPT.md").write_text("You are terse.")
        await _reload(registry, "shop")
    else:
        dialog = tmp_path / "shop.gbai" / "shop.gbdialog" / "start.bas"
        dialog.write_text('SET CONTEXT "offer" AS "20% off every order this week."\n')
        await _reload(registry, "shop")
    openai_server.script(Answer(text=("A fresh answer.",)))
    assert (await chat(asking, bot)(question)).replies == ["A fresh answer."]
    assert len(openai_server.calls) == 2

    # and the first scope still has its answer
    if change in ("other system prompt", "other context"):
        write_bot(tmp_path, "shop", prompt="You are the shop's assistant.", start=start)
        await _reload(registry, "shop")
    assert (await chat(registry, "shop")(question)).replies == ["Yes: 10% off."]
    assert len(openai_server.calls) == 2


async def test_ingesting_into_the_knowledge_base_invalidates_the_bots_answers(
    openai_server: FakeOpenAI,
    registries: Registries,
    chat: Chat,
    stores: Stores,
    llm_cache: LLMCache,
    tmp_path: Path,
) -> None:
    name = f"kb-{uuid.uuid4().hex[:8]}"  # kb_documents rows are kept per bot name
    package = write_bot(
        tmp_path, name, documents={"warranty.md": "# Warranty\n\nThe warranty lasts 2 years.\n"}
    )
    registry = await registries(tmp_path, openai_server)
    kb = KnowledgeBase(QdrantIndex.connect(":memory:"), PostgresKbDocuments(stores.pool))
    ingester = PackageIngester(kb, llm_cache=llm_cache)
    try:
        ingester.ingest(name, package)
        await ingester.wait()
        knowledge = knowledge_search(kb)
        question = "How long is the warranty?"
        openai_server.script(Answer(text=("Two years.",)))
        await chat(registry, name, knowledge=knowledge)(question)
        sent = [m["content"] for m in openai_server.calls[0].body["messages"]]
        assert any("The warranty lasts 2 years." in m for m in sent)

        ingester.ingest(name, package)  # nothing changed: the answer stands
        await ingester.wait()
        again = await chat(registry, name, knowledge=knowledge)(question)
        assert again.replies == ["Two years."] and len(openai_server.calls) == 1

        (package / f"{name}.gbkb" / "docs" / "warranty.md").write_text(
            "# Warranty\n\nThe warranty lasts 3 years since June.\n"
        )
        ingester.ingest(name, package)
        await ingester.wait()
        openai_server.script(Answer(text=("Three years.",)))
        fresh = await chat(registry, name, knowledge=knowledge)(question)
        assert fresh.replies == ["Three years."] and len(openai_server.calls) == 2
        sent = [m["content"] for m in openai_server.calls[1].body["messages"]]
        assert any("3 years since June" in m for m in sent)
    finally:
        await ingester.close()
        await kb.close()


# -- turns that are never cached -------------------------------------------------------------


async def test_a_turn_that_called_a_tool_is_not_cached(
    openai_server: FakeOpenAI, bots: LoadBots, chat: Chat, llm_cache: LLMCache
) -> None:
    registry = await bots(openai_server, "llm-tools", config={"llm-tools": {"llm-cache": "true"}})
    for _ in range(2):
        openai_server.script(
            Answer(tool_calls=(ToolUse("call_1", "get-price", {"product": "tv"}),)),
            Answer(text=("The tv costs 1299.",)),
        )
        turn = await chat(registry, "llm-tools")("how much is the tv?")
        assert turn.replies[-1] == "The tv costs 1299."
    assert len(openai_server.calls) == 4  # both users' turns went to the model and the tool
    assert llm_cache.counters("llm-tools").stored == 0

    # the same bot's answer that needed no tool is kept (its tools are part of the scope)
    openai_server.script(Answer(text=("Ask me about any product.",)))
    await chat(registry, "llm-tools")("what can you do?")
    again = await chat(registry, "llm-tools")("What can you do?")
    assert again.replies[-1] == "Ask me about any product." and len(openai_server.calls) == 5


async def test_a_follow_up_in_a_conversation_is_not_cached(
    openai_server: FakeOpenAI,
    registries: Registries,
    chat: Chat,
    llm_cache: LLMCache,
    tmp_path: Path,
) -> None:
    write_bot(tmp_path, "shop")
    registry = await registries(tmp_path, openai_server)
    openai_server.script(Answer(text=("We sell phones and tvs.",)), Answer(text=("The tv.",)))
    talk = chat(registry, "shop")
    await talk("what do you sell?")
    # the same user again: the history may change what the question means
    assert (await talk("what do you sell?")).replies == ["The tv."]
    assert len(openai_server.calls) == 2
    assert llm_cache.counters("shop").skipped == 1
    # another user's first question still finds the first answer
    assert (await chat(registry, "shop")("what do you sell?")).replies == [
        "We sell phones and tvs."
    ]


async def test_an_answer_cut_by_the_token_limit_is_not_kept(
    openai_server: FakeOpenAI, registries: Registries, chat: Chat, tmp_path: Path
) -> None:
    write_bot(tmp_path, "shop")
    registry = await registries(tmp_path, openai_server)
    openai_server.script(Answer(text=("The full list is: phones, tvs, ",), finish="length"))
    await chat(registry, "shop")("list everything you sell")
    openai_server.script(Answer(text=("Phones and tvs.",)))
    assert (await chat(registry, "shop")("list everything you sell")).replies == ["Phones and tvs."]


async def test_entries_expire_after_llm_cache_ttl(
    openai_server: FakeOpenAI, registries: Registries, chat: Chat, tmp_path: Path
) -> None:
    write_bot(tmp_path, "shop", rows={"llm-cache-ttl": "0.4"})
    registry = await registries(tmp_path, openai_server)
    openai_server.script(Answer(text=("Free over 50 euros.",)))
    await chat(registry, "shop")("is shipping free?")
    assert (await chat(registry, "shop")("is shipping free?")).replies == ["Free over 50 euros."]
    await asyncio.sleep(0.6)
    openai_server.script(Answer(text=("Free over 60 euros now.",)))
    assert (await chat(registry, "shop")("is shipping free?")).replies == [
        "Free over 60 euros now."
    ]
    assert len(openai_server.calls) == 2


async def test_the_cache_is_off_unless_the_bot_turns_it_on(
    openai_server: FakeOpenAI,
    registries: Registries,
    chat: Chat,
    llm_cache: LLMCache,
    tmp_path: Path,
) -> None:
    write_bot(tmp_path, "plain", rows={"llm-cache": "false"})
    registry = await registries(tmp_path, openai_server)
    openai_server.script(Answer(text=("One.",)), Answer(text=("Two.",)))
    assert (await chat(registry, "plain")("hello?")).replies == ["One."]
    assert (await chat(registry, "plain")("hello?")).replies == ["Two."]
    assert llm_cache.counters("plain") == CacheCounters()


async def test_a_cache_that_fails_costs_a_model_call_not_the_turn(
    openai_server: FakeOpenAI,
    registries: Registries,
    chat: Chat,
    services: Services,
    embedder: Embedder,
    tmp_path: Path,
) -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    cache = LLMCache(RedisAnswers(dead), embedder=embedder)
    write_bot(tmp_path, "shop")
    registry = await registries(tmp_path, openai_server)
    dispatcher = Dispatcher(registry, replace(services, llm_cache=cache))
    try:
        for text in ("Hi!", "Hi again!"):
            openai_server.script(Answer(text=(text,)))
            sink = Sink()
            user = uuid.uuid4().hex[:8]
            message = InboundMessage("test", "shop", user, user, uuid.uuid4().hex, "hello?")
            await dispatcher.handle(message, sink)
            assert [m.text for m in sink.messages] == [text]
        assert cache.counters("shop").errors >= 2
    finally:
        await dead.aclose()
