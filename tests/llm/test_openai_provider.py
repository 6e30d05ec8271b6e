"""The OpenAI provider with the real ``openai`` SDK against a fake chat-completions server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from pipeline.llm import (
    AssistantMessage,
    Completion,
    CompletionRequest,
    EmbeddingsUnsupported,
    OpenAIProvider,
    ProviderUnavailable,
    RateLimited,
    RequestRefused,
    StreamDone,
    StreamEvent,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolDefinition,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from tests.llm.fake_openai import API_KEY, FakeOpenAI, embedding_of
from tests.llm.scripted import Answer, Cut, Fail, Garbage, ToolUse

WEATHER = ToolDefinition.from_schema(
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
)
HELLO = CompletionRequest([SystemMessage("Be brief."), UserMessage("hi")])


@pytest.fixture
async def provider(openai_server: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    llm = OpenAIProvider(
        api_key=API_KEY,
        model="gpt-test",
        base_url=f"{openai_server.url}/v1",
        embedding_model="text-embedding-test",
        timeout=5,
    )
    yield llm
    await llm.aclose()


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def test_complete(openai_server: FakeOpenAI, provider: OpenAIProvider) -> None:
    openai_server.script(Answer(text=("Hello!",), input_tokens=12, output_tokens=3))
    completion = await provider.complete(HELLO)
    assert completion == Completion(
        text="Hello!",
        finish_reason="stop",
        usage=Usage(input_tokens=12, output_tokens=3),
        model="gpt-test",
        provider="openai",
    )
    [call] = openai_server.calls
    assert call.body["model"] == "gpt-test"
    assert call.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert "stream" not in call.body


async def test_stream_text_and_usage(openai_server: FakeOpenAI, provider: OpenAIProvider) -> None:
    openai_server.script(Answer(text=("Hel", "lo ", "there"), input_tokens=20, output_tokens=4))
    events = await collect(provider.stream(HELLO))
    assert events[:-1] == [TextDelta("Hel"), TextDelta("lo "), TextDelta("there")]
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.completion.text == "Hello there"
    assert done.completion.usage == Usage(input_tokens=20, output_tokens=4)
    assert done.completion.finish_reason == "stop"
    assert openai_server.calls[0].body["stream"] is True
    assert openai_server.calls[0].body["stream_options"] == {"include_usage": True}


async def test_think_blocks_split_across_chunks_never_reach_the_text(
    openai_server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    openai_server.script(
        Answer(text=("<thi", "nk>The user greets", " me.</th", "ink>\n\nHi", "!", " <think>more")),
        Answer(text=("<think>reasoning</think>Whole answer",)),
    )
    events = await collect(provider.stream(HELLO))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "Hi! "
    assert isinstance(events[-1], StreamDone) and events[-1].completion.text == "Hi! "
    completion = await provider.complete(HELLO)
    assert completion.text == "Whole answer"


async def test_a_tool_call(openai_server: FakeOpenAI, provider: OpenAIProvider) -> None:
    openai_server.script(
        Answer(tool_calls=(ToolUse("call_1", "weather", {"city": "Paris"}),)),
        Answer(tool_calls=(ToolUse("call_2", "weather", {"city": "Rome"}),)),
    )
    request = CompletionRequest([UserMessage("weather in Paris?")], tools=[WEATHER])
    completion = await provider.complete(request)
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == (
        ToolCall("call_1", "weather", json.dumps({"city": "Paris"}), {"city": "Paris"}),
    )
    assert completion.tool_calls[0].arguments == {"city": "Paris"}
    assert openai_server.calls[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather in a city",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    events = await collect(provider.stream(request))
    [ready] = [e for e in events if isinstance(e, ToolCallReady)]
    assert (ready.call.id, ready.call.name, ready.call.arguments) == (
        "call_2",
        "weather",
        {"city": "Rome"},
    )


async def test_parallel_tool_calls_in_order(
    openai_server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    calls = (
        ToolUse("call_a", "weather", {"city": "Paris"}, pieces=4),
        ToolUse("call_b", "weather", {"city": "Lisbon"}, pieces=2),
        ToolUse("call_c", "time", {}, pieces=1),
    )
    openai_server.script(Answer(text=("Checking.",), tool_calls=calls), Answer(tool_calls=calls))
    request = CompletionRequest([UserMessage("weather in Paris and Lisbon?")], tools=[WEATHER])
    events = await collect(provider.stream(request))
    ready = [e.call for e in events if isinstance(e, ToolCallReady)]
    assert [(c.id, c.name, c.arguments) for c in ready] == [
        ("call_a", "weather", {"city": "Paris"}),
        ("call_b", "weather", {"city": "Lisbon"}),
        ("call_c", "time", {}),
    ]
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.completion.tool_calls == tuple(ready)
    assert done.completion.text == "Checking."
    completion = await provider.complete(request)
    assert completion.tool_calls == tuple(ready)


async def test_tool_results_and_earlier_calls_go_back_in_openai_form(
    openai_server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    openai_server.script(Answer(text=("Sunny in Paris, rain in Rome.",)))
    paris = ToolCall.from_json("call_1", "weather", '{"city": "Paris"}')
    rome = ToolCall.from_json("call_2", "weather", '{"city": "Rome"}')
    await provider.complete(
        CompletionRequest(
            [
                UserMessage("weather?"),
                AssistantMessage(tool_calls=(paris, rome)),
                ToolResultMessage("call_1", "sunny"),
                ToolResultMessage("call_2", "no such city", is_error=True),
            ],
            temperature=0.2,
            max_tokens=50,
        )
    )
    body = openai_server.calls[0].body
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: no such city"},
    ]
    assert body["temperature"] == 0.2
    # OpenAI's own API takes max_completion_tokens; compatible servers read max_tokens.
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


async def test_a_compatible_server_gets_max_tokens(openai_server: FakeOpenAI) -> None:
    llm = OpenAIProvider(
        api_key=API_KEY,
        model="llama3",
        base_url=f"{openai_server.url}/v1",
        name="ollama",
        max_tokens=99,
        max_tokens_param="max_tokens",
    )
    openai_server.script(Answer(text=("ok",)))
    completion = await llm.complete(HELLO)
    await llm.aclose()
    assert completion.provider == "ollama"
    assert openai_server.calls[0].body["max_tokens"] == 99


async def test_invalid_tool_arguments_are_kept_for_the_model(
    openai_server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    call = ToolCall.from_json("call_1", "weather", '{"city": "Par')
    assert call.arguments is None and call.raw_arguments == '{"city": "Par'
    assert ToolCall.from_json("c", "t", "").arguments == {}
    assert ToolCall.from_json("c", "t", "[1]").arguments is None


@pytest.mark.parametrize("drop", [False, True], ids=["ended-early", "connection-dropped"])
async def test_a_cut_stream_is_unavailable(
    openai_server: FakeOpenAI, provider: OpenAIProvider, drop: bool
) -> None:
    openai_server.script(Cut(Answer(text=("Hel", "lo", " world")), after=3, drop=drop))
    seen: list[StreamEvent] = []
    with pytest.raises(ProviderUnavailable):
        async for event in provider.stream(HELLO):
            seen.append(event)
    assert seen == [TextDelta("Hel"), TextDelta("lo")]


async def test_a_malformed_stream_is_unavailable(
    openai_server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    openai_server.script(Garbage())
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await collect(provider.stream(HELLO))


async def test_errors_are_mapped_with_status_and_retry_after(
    openai_server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    openai_server.script(
        Fail(429, "Rate limit reached", {"Retry-After": "7"}),
        Fail(503, "overloaded"),
        Fail(404, "The model does not exist"),
    )
    with pytest.raises(RateLimited) as limited:
        await provider.complete(HELLO)
    assert (limited.value.status, limited.value.retry_after) == (429, 7.0)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await collect(provider.stream(HELLO))
    assert unavailable.value.status == 503 and unavailable.value.provider == "openai"
    with pytest.raises(RequestRefused) as refused:
        await provider.complete(HELLO)
    assert refused.value.status == 404
    assert "does not exist" in str(refused.value)


async def test_a_wrong_key_is_refused(openai_server: FakeOpenAI) -> None:
    llm = OpenAIProvider(api_key="sk-wrong", model="gpt-test", base_url=f"{openai_server.url}/v1")
    with pytest.raises(RequestRefused) as refused:
        await llm.complete(HELLO)
    await llm.aclose()
    assert refused.value.status == 401
    assert openai_server.calls[0].headers["Authorization"] == "Bearer sk-wrong"


async def test_embeddings(openai_server: FakeOpenAI, provider: OpenAIProvider) -> None:
    texts = ["a cat", "the quick brown fox", "tea"]
    assert await provider.embed(texts) == [embedding_of(t) for t in texts]
    assert openai_server.calls[0].body == {
        "model": "text-embedding-test",
        "input": texts,
        "encoding_format": "float",
    }
    assert await provider.embed([]) == []
    without = OpenAIProvider(api_key=API_KEY, model="m", base_url=f"{openai_server.url}/v1")
    with pytest.raises(EmbeddingsUnsupported):
        await without.embed(["x"])
    await without.aclose()
