"""An ordered list of providers behind one deadline.

A request goes to the first provider; a :class:`RateLimited` or :class:`ProviderUnavailable`
answer is tried again after an exponential backoff (never sooner than the provider's
Retry-After), and after the last attempt the next provider takes the request. A
:class:`RequestRefused` is raised at once: the same request would be refused again (a bad
key or an unknown model is a configuration to fix, not an outage to hide). Past the
deadline, or when the next wait would end past it, no attempt starts:
:class:`DeadlineExceeded` (or the last provider's error) lets the caller answer the user.

A stream is retried only until its first event: once text has reached the user, an error
is the caller's to handle (it cannot be taken back).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pipeline.llm.base import Completion, CompletionRequest, LLMProvider, StreamEvent
from pipeline.llm.errors import (
    DeadlineExceeded,
    EmbeddingsUnsupported,
    ProviderError,
    ProviderNotConfigured,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_DEADLINE = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per provider and the backoff between them (seconds)."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25  # the backoff is shortened by up to this fraction, at random

    def delay(
        self, attempt: int, retry_after: float | None, rng: Callable[[], float] = random.random
    ) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        backoff *= 1.0 - self.jitter * rng()
        return float(max(backoff, retry_after or 0.0))


class FallbackProvider:
    """Providers in order of preference, as one :class:`LLMProvider`."""

    def __init__(
        self,
        providers: Sequence[LLMProvider],
        *,
        policy: RetryPolicy | None = None,
        deadline: float = DEFAULT_DEADLINE,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not providers:
            raise ProviderNotConfigured("no LLM provider configured")
        self.providers = tuple(providers)
        self.policy = policy or RetryPolicy()
        self.deadline = deadline
        self._rng = rng

    @property
    def name(self) -> str:
        return ">".join(provider.name for provider in self.providers)

    async def _call(self, call: Callable[[LLMProvider], Awaitable[T]], what: str) -> T:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.deadline
        last: ProviderError | None = None
        unsupported: EmbeddingsUnsupported | None = None
        for provider in self.providers:
            for attempt in range(1, self.policy.attempts + 1):
                remaining = end - loop.time()
                if remaining <= 0:
                    raise self._deadline(what, last)
                try:
                    async with asyncio.timeout(remaining) as scope:
                        return await call(provider)
                except TimeoutError as e:
                    if scope.expired():
                        raise self._deadline(what, last) from e
                    raise
                except EmbeddingsUnsupported as e:
                    unsupported = e
                    break
                except ProviderError as e:
                    if not e.retryable:
                        log.warning("llm %s refused by %s: %s", what, provider.name, e)
                        raise
                    last = e
                    delay = self._retry_delay(provider, what, attempt, e, end - loop.time())
                    if delay is None:
                        break
                    await asyncio.sleep(delay)
        if last is not None:
            raise last
        raise unsupported or ProviderNotConfigured(f"no provider could {what}")

    def _retry_delay(
        self, provider: LLMProvider, what: str, attempt: int, error: ProviderError, left: float
    ) -> float | None:
        """Log the failure; the wait before trying this provider again, or ``None`` to move on.

        A wait that would end past the deadline is not started: the next provider may answer.
        """
        delay = self.policy.delay(attempt, error.retry_after, self._rng)
        again = attempt < self.policy.attempts and delay < left
        log.warning(
            "llm %s failed on %s (attempt %d of %d): %s; %s",
            what,
            provider.name,
            attempt,
            self.policy.attempts,
            error,
            f"retrying in {delay:.2f}s" if again else "moving on",
        )
        return delay if again else None

    def _deadline(self, what: str, last: ProviderError | None) -> DeadlineExceeded:
        reason = f" (last error: {last})" if last is not None else ""
        return DeadlineExceeded(f"no answer to the {what} within {self.deadline:g}s{reason}")

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self._call(lambda provider: provider.complete(request), "completion")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._call(lambda provider: provider.embed(texts), "embedding")

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        opened: list[AsyncIterator[StreamEvent]] = []

        async def first_event(provider: LLMProvider) -> StreamEvent:
            events = provider.stream(request)
            opened.append(events)
            try:
                return await anext(events)
            except StopAsyncIteration:
                raise ProviderUnavailable("empty stream", provider=provider.name) from None
            except BaseException:
                await _close(events)
                raise

        first = await self._call(first_event, "stream")
        events = opened[-1]
        try:
            yield first
            async for event in events:
                yield event
        finally:
            await _close(events)

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()


async def _close(events: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
