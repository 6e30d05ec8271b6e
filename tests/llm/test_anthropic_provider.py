"""The Anthropic provider with the real ``anthropic`` SDK against a fake Messages API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.llm import (
    AnthropicProvider,
    AssistantMessage,
    CompletionRequest,
    EmbeddingsUnsupported,
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
from tests.llm.fake_anthropic import API_KEY, FakeAnthropic
from tests.llm.scripted import Answer, Cut, Fail, Garbage, ToolUse

# As basic/tools.py's anthropic_tool writes a BASIC tool.
WEATHER = ToolDefinition.from_schema(
    {
        "name": "weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
)
HELLO = CompletionRequest([SystemMessage("Be brief."), UserMessage("hi")])


@pytest.fixture
async def provider(anthropic_server: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    llm = AnthropicProvider(
        api_key=API_KEY, model="claude-test", base_url=anthropic_server.url, timeout=5
    )
    yield llm
    await llm.aclose()


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def test_complete(anthropic_server: FakeAnthropic, provider: AnthropicProvider) -> None:
    anthropic_server.script(
        Answer(text=("Hello!",), thinking="They greet me.", input_tokens=30, cached_tokens=10)
    )
    completion = await provider.complete(HELLO)
    assert completion.text == "Hello!"
    assert completion.finish_reason == "stop"
    assert completion.usage == Usage(input_tokens=30, output_tokens=7, cached_input_tokens=10)
    assert (completion.model, completion.provider) == ("claude-test", "anthropic")
    [call] = anthropic_server.calls
    assert call.body["system"] == "Be brief."
    assert call.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert call.body["max_tokens"] == 4096  # the API requires one
    assert call.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_stream_text_usage_and_no_thinking(
    anthropic_server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    anthropic_server.script(
        Answer(
            text=("Hel", "lo ", "there"),
            thinking="Secret reasoning about the user.",
            input_tokens=25,
            output_tokens=15,
        )
    )
    events = await collect(provider.stream(HELLO))
    assert events[:-1] == [TextDelta("Hel"), TextDelta("lo "), TextDelta("there")]
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.completion.text == "Hello there"
    assert done.completion.usage == Usage(input_tokens=25, output_tokens=15)
    assert done.completion.finish_reason == "stop"


async def test_think_tags_in_text_are_stripped_too(
    anthropic_server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    anthropic_server.script(Answer(text=("<think>x", "y</think>", "Visible")))
    events = await collect(provider.stream(HELLO))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Visible"


async def test_tool_use(anthropic_server: FakeAnthropic, provider: AnthropicProvider) -> None:
    anthropic_server.script(
        Answer(
            text=("Let me check.",), tool_calls=(ToolUse("toolu_1", "weather", {"city": "Paris"}),)
        ),
        Answer(tool_calls=(ToolUse("toolu_2", "weather", {"city": "Rome"}, pieces=5),)),
    )
    request = CompletionRequest([UserMessage("weather in Paris?")], tools=[WEATHER])
    completion = await provider.complete(request)
    assert completion.text == "Let me check."
    assert completion.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in completion.tool_calls] == [
        ("toolu_1", "weather", {"city": "Paris"})
    ]
    assert anthropic_server.calls[0].body["tools"] == [
        {
            "name": "weather",
            "description": "The weather in a city",
            "input_schema": WEATHER.parameters,
        }
    ]
    events = await collect(provider.stream(request))
    assert [(e.call.id, e.call.arguments) for e in events if isinstance(e, ToolCallReady)] == [
        ("toolu_2", {"city": "Rome"})
    ]


async def test_parallel_tool_use(
    anthropic_server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    calls = (
        ToolUse("toolu_a", "weather", {"city": "Paris"}),
        ToolUse("toolu_b", "weather", {"city": "Lisbon"}, pieces=1),
        ToolUse("toolu_c", "time", {}),
    )
    anthropic_server.script(Answer(tool_calls=calls), Answer(tool_calls=calls))
    request = CompletionRequest([UserMessage("Paris and Lisbon?")], tools=[WEATHER])
    events = await collect(provider.stream(request))
    ready = [e.call for e in events if isinstance(e, ToolCallReady)]
    assert [(c.id, c.name, c.arguments) for c in ready] == [
        ("toolu_a", "weather", {"city": "Paris"}),
        ("toolu_b", "weather", {"city": "Lisbon"}),
        ("toolu_c", "time", {}),
    ]
    done = events[-1]
    assert isinstance(done, StreamDone) and done.completion.tool_calls == tuple(ready)
    assert done.completion.finish_reason == "tool_calls"
    assert (await provider.complete(request)).tool_calls == tuple(ready)


async def test_tool_results_go_back_in_one_user_turn(
    anthropic_server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    anthropic_server.script(Answer(text=("Sunny; no Atlantis.",)))
    paris = ToolCall.from_json("toolu_1", "weather", '{"city": "Paris"}')
    atlantis = ToolCall.from_json("toolu_2", "weather", '{"city": "Atlantis"}')
    await provider.complete(
        CompletionRequest(
            [
                SystemMessage("You are a weather bot."),
                SystemMessage("Answer in English."),
                UserMessage("weather?"),
                AssistantMessage(text="Checking.", tool_calls=(paris, atlantis)),
                ToolResultMessage("toolu_1", "sunny"),
                ToolResultMessage("toolu_2", "no such city", is_error=True),
            ],
            temperature=0.1,
            max_tokens=300,
        )
    )
    body = anthropic_server.calls[0].body
    assert body["system"] == "You are a weather bot.\n\nAnswer in English."
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "weather",
                    "input": {"city": "Atlantis"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "no such city",
                    "is_error": True,
                },
            ],
        },
    ]
    # The Messages API of the SDK 2.x has no temperature.
    assert body["max_tokens"] == 300 and "temperature" not in body


@pytest.mark.parametrize("drop", [False, True], ids=["ended-early", "connection-dropped"])
async def test_a_cut_stream_is_unavailable(
    anthropic_server: FakeAnthropic, provider: AnthropicProvider, drop: bool
) -> None:
    # message_start, ping, content_block_start, two text deltas: then nothing.
    anthropic_server.script(Cut(Answer(text=("Hel", "lo", " world")), after=5, drop=drop))
    seen: list[StreamEvent] = []
    with pytest.raises(ProviderUnavailable):
        async for event in provider.stream(HELLO):
            seen.append(event)
    assert seen == [TextDelta("Hel"), TextDelta("lo")]


async def test_a_malformed_stream_is_unavailable(
    anthropic_server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    anthropic_server.script(Garbage())
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await collect(provider.stream(HELLO))


async def test_errors_are_mapped(
    anthropic_server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    anthropic_server.script(
        Fail(429, "Number of request tokens has exceeded your rate limit", {"retry-after": "3"}),
        Fail(529, "Overloaded"),
        Fail(400, "prompt is too long"),
    )
    with pytest.raises(RateLimited) as limited:
        await provider.complete(HELLO)
    assert (limited.value.status, limited.value.retry_after) == (429, 3.0)
    with pytest.raises(ProviderUnavailable) as overloaded:
        await collect(provider.stream(HELLO))
    assert overloaded.value.status == 529
    with pytest.raises(RequestRefused) as refused:
        await provider.complete(HELLO)
    assert refused.value.status == 400


async def test_a_wrong_key_is_refused(anthropic_server: FakeAnthropic) -> None:
    llm = AnthropicProvider(
        api_key="sk-ant-wrong", model="claude-test", base_url=anthropic_server.url
    )
    with pytest.raises(RequestRefused) as refused:
        await llm.complete(HELLO)
    await llm.aclose()
    assert refused.value.status == 401 and refused.value.provider == "anthropic"


async def test_no_embeddings(provider: AnthropicProvider) -> None:
    with pytest.raises(EmbeddingsUnsupported):
        await provider.embed(["x"])
