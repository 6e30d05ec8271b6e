"""Retries, Retry-After, the next provider, the deadline: real SDKs against the fake servers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from pipeline.llm import (
    AnthropicProvider,
    CompletionRequest,
    DeadlineExceeded,
    FallbackProvider,
    OpenAIProvider,
    ProviderUnavailable,
    RateLimited,
    RequestRefused,
    RetryPolicy,
    StreamDone,
    TextDelta,
    UserMessage,
)
from tests.llm import fake_anthropic, fake_openai
from tests.llm.fake_anthropic import FakeAnthropic
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer, Cut, Fail, Hang

HELLO = CompletionRequest([UserMessage("hi")])
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, jitter=0.0)


@pytest.fixture
async def pair(
    openai_server: FakeOpenAI, anthropic_server: FakeAnthropic
) -> AsyncIterator[tuple[OpenAIProvider, AnthropicProvider]]:
    first = OpenAIProvider(
        api_key=fake_openai.API_KEY, model="gpt-test", base_url=f"{openai_server.url}/v1"
    )
    second = AnthropicProvider(
        api_key=fake_anthropic.API_KEY, model="claude-test", base_url=anthropic_server.url
    )
    yield first, second
    await first.aclose()
    await second.aclose()


def test_backoff_doubles_is_capped_and_never_undercuts_retry_after() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, jitter=0.5)
    assert [policy.delay(n, None, lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]
    assert policy.delay(1, None, lambda: 1.0) == 0.25  # jitter only shortens
    assert policy.delay(1, 3.0, lambda: 0.0) == 3.0  # Retry-After is a floor
    assert policy.delay(5, 1.0, lambda: 0.0) == 4.0


async def test_429_waits_for_retry_after_then_succeeds(
    openai_server: FakeOpenAI, pair: tuple[OpenAIProvider, AnthropicProvider]
) -> None:
    openai_server.script(Fail(429, "slow down", {"Retry-After": "1"}), Answer(text=("ok",)))
    chain = FallbackProvider(pair, policy=FAST, deadline=10)
    completion = await chain.complete(HELLO)
    assert (completion.text, completion.provider) == ("ok", "openai")
    first, second = openai_server.calls
    # FAST's own backoff is 10 ms: the second of wait is the provider's Retry-After.
    assert second.at - first.at >= 0.95


async def test_retry_after_ms_is_read_too(
    openai_server: FakeOpenAI, pair: tuple[OpenAIProvider, AnthropicProvider]
) -> None:
    openai_server.script(Fail(429, "slow down", {"retry-after-ms": "300"}), Answer(text=("ok",)))
    await FallbackProvider(pair, policy=FAST, deadline=10).complete(HELLO)
    first, second = openai_server.calls
    assert second.at - first.at >= 0.28


async def test_5xx_retries_then_the_next_provider_answers(
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    pair: tuple[OpenAIProvider, AnthropicProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    openai_server.script(Fail(503, "down"), Fail(500, "down"), Fail(502, "down"))
    anthropic_server.script(Answer(text=("from claude",)))
    chain = FallbackProvider(pair, policy=FAST, deadline=10)
    with caplog.at_level(logging.WARNING, logger="pipeline.llm.fallback"):
        completion = await chain.complete(HELLO)
    assert (completion.text, completion.provider) == ("from claude", "anthropic")
    assert len(openai_server.calls) == 3 and len(anthropic_server.calls) == 1
    # The provider's status is in the log.
    assert "HTTP 503" in caplog.text and "HTTP 502" in caplog.text


async def test_every_provider_failing_raises_the_last_error(
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    pair: tuple[OpenAIProvider, AnthropicProvider],
) -> None:
    openai_server.script(*[Fail(500)] * 3)
    anthropic_server.script(*[Fail(429, "busy")] * 3)
    with pytest.raises(RateLimited) as error:
        await FallbackProvider(pair, policy=FAST, deadline=10).complete(HELLO)
    assert error.value.provider == "anthropic" and error.value.status == 429


async def test_401_is_refused_at_once(
    openai_server: FakeOpenAI, anthropic_server: FakeAnthropic
) -> None:
    wrong = OpenAIProvider(api_key="sk-wrong", model="m", base_url=f"{openai_server.url}/v1")
    other = AnthropicProvider(
        api_key=fake_anthropic.API_KEY, model="c", base_url=anthropic_server.url
    )
    with pytest.raises(RequestRefused) as refused:
        await FallbackProvider([wrong, other], policy=FAST, deadline=10).complete(HELLO)
    await wrong.aclose()
    await other.aclose()
    assert refused.value.status == 401
    assert len(openai_server.calls) == 1 and anthropic_server.calls == []


async def test_the_deadline_ends_a_request_that_hangs(
    openai_server: FakeOpenAI, pair: tuple[OpenAIProvider, AnthropicProvider]
) -> None:
    openai_server.script(Hang(30))
    chain = FallbackProvider(pair, policy=FAST, deadline=0.5)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"within 0\.5s"):
        await chain.complete(HELLO)
    assert time.monotonic() - started < 2


async def test_a_retry_after_past_the_deadline_moves_on_at_once(
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    pair: tuple[OpenAIProvider, AnthropicProvider],
) -> None:
    openai_server.script(Fail(429, "come back in a minute", {"Retry-After": "60"}))
    anthropic_server.script(Answer(text=("right away",)))
    started = time.monotonic()
    completion = await FallbackProvider(pair, policy=FAST, deadline=5).complete(HELLO)
    assert completion.text == "right away"
    assert time.monotonic() - started < 2


async def test_a_stream_is_retried_until_its_first_event(
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    pair: tuple[OpenAIProvider, AnthropicProvider],
) -> None:
    # Cut before any text: nothing reached the user, so the next provider streams instead.
    openai_server.script(Fail(503), Cut(Answer(text=("lost",)), after=1, drop=True), Hang(0.3))
    anthropic_server.script(Answer(text=("Hi ", "there")))
    chain = FallbackProvider(
        pair, policy=RetryPolicy(attempts=3, base_delay=0.01, jitter=0), deadline=10
    )
    events = [event async for event in chain.stream(HELLO)]
    assert events[:2] == [TextDelta("Hi "), TextDelta("there")]
    assert isinstance(events[-1], StreamDone) and events[-1].completion.provider == "anthropic"
    assert len(openai_server.calls) == 3


async def test_a_stream_cut_after_text_is_not_retried(
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    pair: tuple[OpenAIProvider, AnthropicProvider],
) -> None:
    openai_server.script(Cut(Answer(text=("Hel", "lo")), after=2, drop=True))
    chain = FallbackProvider(pair, policy=FAST, deadline=10)
    seen = []
    with pytest.raises(ProviderUnavailable):
        async for event in chain.stream(HELLO):
            seen.append(event)
    assert seen == [TextDelta("Hel")]
    assert anthropic_server.calls == []


async def test_the_deadline_bounds_the_wait_for_a_stream(
    openai_server: FakeOpenAI, pair: tuple[OpenAIProvider, AnthropicProvider]
) -> None:
    openai_server.script(Hang(30))
    chain = FallbackProvider(pair, policy=FAST, deadline=0.3)
    with pytest.raises(DeadlineExceeded):
        async for _ in chain.stream(HELLO):
            pass


async def test_concurrent_requests_do_not_block_each_other(
    openai_server: FakeOpenAI, pair: tuple[OpenAIProvider, AnthropicProvider]
) -> None:
    """The providers never block the loop: ten hanging requests and a tick run together."""
    openai_server.script(*[Hang(0.5)] * 10)
    chain = FallbackProvider(pair[:1], policy=RetryPolicy(attempts=1), deadline=0.4)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1

    results = await asyncio.gather(
        tick(), *[chain.complete(HELLO) for _ in range(10)], return_exceptions=True
    )
    assert ticks == 20
    assert all(isinstance(r, DeadlineExceeded) for r in results[1:])
