"""Building the model's conversation: order, the token budget, the offline tokenizer; and the
lifetime of the providers a bot loads with."""

from __future__ import annotations

import socket

import pytest

from pipeline.conversation import build_conversation, history_messages, system_prompt
from pipeline.llm import AssistantMessage, SystemMessage, ToolCall, ToolResultMessage, UserMessage
from pipeline.tokens import (
    MESSAGE_OVERHEAD,
    answer_reserve,
    context_window,
    counter_for_model,
)
from storage.base import HistoryEntry
from tests.llm.fake_openai import FakeOpenAI
from tests.offline_network import UnplannedNetworkAccess
from tests.pipeline.llm_turns.conftest import LoadBots

GPT4 = counter_for_model("gpt-4")


def test_tokens_are_counted_offline_by_a_real_tokenizer() -> None:
    assert GPT4.exact
    assert GPT4.count("hello world") == 2  # cl100k_base: "hello", " world"
    assert GPT4.count("") == 0
    # other models: the same vocabulary with a margin, never under
    claude = counter_for_model("claude-sonnet-4-5")
    assert not claude.exact
    assert claude.count("hello world") == 3  # ceil(2 * 1.15)
    assert counter_for_model("gpt-4o").count("hello world") == 2


@pytest.mark.parametrize(
    ("model", "config", "window"),
    [
        ("gpt-4o-mini", {}, 128_000),
        ("claude-sonnet-4-5", {}, 200_000),
        ("some-local.gguf", {}, 32_768),
        ("some-local.gguf", {"llm-server-ctx-size": "4096"}, 4096),
        ("gpt-4o", {"llm-context-window": "800"}, 800),
    ],
)
def test_context_windows(model: str, config: dict[str, str], window: int) -> None:
    assert context_window(model, config) == window


def test_answer_reserve_is_max_tokens_within_a_quarter_of_the_window() -> None:
    assert answer_reserve(128_000, None) == 4096
    assert answer_reserve(128_000, 1000) == 1000
    assert answer_reserve(800, None) == 200


def test_the_conversation_in_order() -> None:
    call = ToolCall.from_json("c1", "get-price", '{"product": "tv"}')
    conversation = build_conversation(
        system=system_prompt("From PROMPT.md", "From BEGIN SYSTEM PROMPT"),
        context="Context of this conversation:\n\nshop: open",
        passages=[],
        history=history_messages(
            [
                HistoryEntry("assistant", "a greeting before anything"),
                HistoryEntry("user", "hi"),
                HistoryEntry("assistant", "hello"),
                HistoryEntry("system", "not shown"),
            ]
        ),
        question="tv?",
        tail=[AssistantMessage("", (call,)), ToolResultMessage("c1", '{"result": 1}')],
        counter=GPT4,
        budget=10_000,
    )
    assert conversation.messages == (
        SystemMessage("From PROMPT.md\n\nFrom BEGIN SYSTEM PROMPT"),
        SystemMessage("Context of this conversation:\n\nshop: open"),
        UserMessage("hi"),  # history opens with the user
        AssistantMessage("hello"),
        UserMessage("tv?"),
        AssistantMessage("", (call,)),
        ToolResultMessage("c1", '{"result": 1}'),
    )
    assert system_prompt(None, None) == "You are a helpful assistant."


def test_the_budget_drops_the_oldest_history_and_keeps_the_rest() -> None:
    history = [
        UserMessage(f"question {i}") if i % 2 == 0 else AssistantMessage(f"answer {i}")
        for i in range(10)
    ]
    counts = {GPT4.count(m.text) for m in history}
    assert counts == {3}  # "question", " ", "6": three tokens, as "answer 7"
    each = MESSAGE_OVERHEAD + 3
    fixed = MESSAGE_OVERHEAD + 2 * (MESSAGE_OVERHEAD + 1)  # priming, "system", "now"
    conversation = build_conversation(
        system="system",
        context=None,
        passages=[],
        history=history,
        question="now",
        counter=GPT4,
        budget=fixed + 4 * each,
    )
    assert conversation.messages[1:] == (*history[6:], UserMessage("now"))
    assert (conversation.history_kept, conversation.history_dropped) == (4, 6)
    assert conversation.tokens == fixed + 4 * each
    # one token less and the oldest kept message goes, with the answer left leading
    tighter = build_conversation(
        system="system",
        context=None,
        passages=[],
        history=history,
        question="now",
        counter=GPT4,
        budget=fixed + 4 * each - 1,
    )
    assert tighter.messages[1:] == (*history[8:], UserMessage("now"))


def test_the_guard_refuses_any_host_but_this_machine() -> None:
    with socket.socket() as s, pytest.raises(UnplannedNetworkAccess):
        s.connect(("192.0.2.1", 443))


async def test_providers_are_built_at_load_and_closed_on_reload_and_close(
    openai_server: FakeOpenAI, bots: LoadBots
) -> None:
    registry = await bots(openai_server, "llm-tools")
    bot = registry.get("llm-tools")
    assert bot is not None and bot.model is not None
    first = bot.model.provider
    assert registry.get("llm-tools") is bot  # not rebuilt per turn
    await registry.reload("llm-tools")
    reloaded = registry.get("llm-tools")
    assert reloaded is not None and reloaded.model is not None
    assert reloaded.model.provider is not first
    clients = [p._client for p in (first, reloaded.model.provider) for p in p.providers]  # type: ignore[attr-defined]
    assert [c.is_closed() for c in clients] == [False, False]  # the old one waits for its turns
    await registry.close()
    assert [c.is_closed() for c in clients] == [True, True]


def test_what_a_person_said_in_a_handoff_is_the_assistants_to_the_model() -> None:
    assert history_messages(
        [
            HistoryEntry("user", "human please"),
            HistoryEntry("agent", "Hi, I am Grace."),
            HistoryEntry("user", "thanks"),
        ]
    ) == [UserMessage("human please"), AssistantMessage("Hi, I am Grace."), UserMessage("thanks")]
