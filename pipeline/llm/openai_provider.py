"""OpenAI chat completions, and every server that speaks them (Groq, Ollama, vLLM, llama.cpp,
LM Studio…) through its base URL, with the ``openai`` SDK's ``AsyncOpenAI``.

The SDK's own retries are off: :mod:`pipeline.llm.fallback` retries, so that a request's
backoff, Retry-After and deadline are decided in one place.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx2
import openai
from openai import AsyncOpenAI

from pipeline.llm.base import (
    AssistantMessage,
    Completion,
    CompletionRequest,
    FinishReason,
    Message,
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
    unseen_images_note,
)
from pipeline.llm.errors import (
    EmbeddingsUnsupported,
    LLMError,
    ProviderUnavailable,
    retry_after_from_headers,
    status_error,
)
from pipeline.llm.thinking import ThinkFilter, strip_think

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"

# Failures of the call itself, and those of reading what came back (a body that is not
# JSON, or JSON that is not the chat-completions shape): both are the provider's fault.
_CALL_ERRORS = (openai.OpenAIError, httpx2.HTTPError, ValueError)
_READ_ERRORS = (*_CALL_ERRORS, AttributeError, IndexError, KeyError, TypeError)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def openai_messages(messages: Sequence[Message], *, vision: bool = False) -> list[dict[str, Any]]:
    """The conversation as chat-completions messages; a user's images as ``image_url``
    parts (data URLs) when ``vision``, else a note in their place."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": message.text})
        elif isinstance(message, UserMessage):
            out.append({"role": "user", "content": _user_content(message, vision)})
        elif isinstance(message, AssistantMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": message.text or None}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.raw_arguments or "{}"},
                    }
                    for call in message.tool_calls
                ]
            elif entry["content"] is None:
                entry["content"] = ""
            out.append(entry)
        elif isinstance(message, ToolResultMessage):
            content = f"Error: {message.content}" if message.is_error else message.content
            out.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": content})
    return out


def _user_content(message: UserMessage, vision: bool) -> str | list[dict[str, Any]]:
    if not message.images:
        return message.text
    if not vision:
        note = unseen_images_note(len(message.images))
        return f"{message.text}\n\n{note}" if message.text else note
    parts: list[dict[str, Any]] = []
    if message.text:
        parts.append({"type": "text", "text": message.text})
    parts.extend(
        {"type": "image_url", "image_url": {"url": image.data_url(), "detail": "auto"}}
        for image in message.images
    )
    return parts


def openai_tools(tools: Sequence[ToolDefinition]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }
        for tool in tools
    ]


def _usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        input_tokens=int(usage.prompt_tokens or 0),
        output_tokens=int(usage.completion_tokens or 0),
        cached_input_tokens=int(getattr(details, "cached_tokens", None) or 0),
    )


def openai_client(*, api_key: str, base_url: str, timeout: float) -> AsyncOpenAI:
    """An SDK client for one endpoint, every argument explicit: the SDK would otherwise read
    OPENAI_API_KEY and OPENAI_BASE_URL itself, and a bot's request could leave with the
    process's key. No retries of its own: the callers decide (a fallback chain, a turn run
    again, a text sent alone)."""
    return AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        organization=None,
        project=None,
        timeout=timeout,
        max_retries=0,
    )


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class _StreamState:
    """What a stream has said so far: visible text, tool calls by index, the finish."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.thinking = ThinkFilter()
        self.text: list[str] = []
        self.calls: dict[int, _PartialCall] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model = ""

    def read(self, chunk: Any) -> list[StreamEvent]:
        """The events one ``chat.completion.chunk`` gives (text now, tool calls at the end)."""
        events: list[StreamEvent] = []
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = _usage(chunk.usage)
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta is not None and delta.content:
                visible = self.thinking.feed(delta.content)
                if visible:
                    self.text.append(visible)
                    events.append(TextDelta(visible))
            for part in (delta.tool_calls if delta is not None else None) or ():
                call = self.calls.setdefault(part.index, _PartialCall())
                call.id = part.id or call.id
                if part.function is not None:
                    call.name = part.function.name or call.name
                    call.arguments += part.function.arguments or ""
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        return events

    def finish(self) -> list[StreamEvent]:
        """The last events, once the stream has ended; a stream that never finished is cut."""
        events: list[StreamEvent] = []
        rest = self.thinking.flush()
        if rest:
            self.text.append(rest)
            events.append(TextDelta(rest))
        if self.finish_reason is None:
            raise ProviderUnavailable(
                "the stream ended before the answer was complete", provider=self.provider
            )
        ready = tuple(
            ToolCall.from_json(call.id or f"call_{index}", call.name, call.arguments)
            for index, call in sorted(self.calls.items())
        )
        events.extend(ToolCallReady(call) for call in ready)
        events.append(
            StreamDone(
                Completion(
                    text="".join(self.text),
                    tool_calls=ready,
                    finish_reason=_FINISH.get(self.finish_reason, "other"),
                    usage=self.usage,
                    model=self.model,
                    provider=self.provider,
                )
            )
        )
        return events


class OpenAIProvider:
    """Chat completions at ``base_url`` (OpenAI's own when not given).

    ``max_tokens_param`` is the request field that caps the answer: OpenAI's current
    ``max_completion_tokens``, or ``max_tokens``, which compatible servers read.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str = OPENAI_BASE_URL,
        name: str = "openai",
        temperature: float | None = None,
        max_tokens: int | None = None,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_completion_tokens",
        embedding_model: str | None = None,
        timeout: float = 60.0,
        vision: bool = False,
    ) -> None:
        self._name = name
        self.vision = vision  # the model reads images (llm-vision in config.csv)
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_tokens_param = max_tokens_param
        self.embedding_model = embedding_model
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout=timeout)

    @property
    def name(self) -> str:
        return self._name

    def _arguments(self, request: CompletionRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": openai_messages(request.messages, vision=self.vision),
        }
        if request.tools:
            arguments["tools"] = openai_tools(request.tools)
        temperature = request.temperature if request.temperature is not None else self.temperature
        if temperature is not None:
            arguments["temperature"] = temperature
        max_tokens = request.max_tokens if request.max_tokens is not None else self.max_tokens
        if max_tokens is not None:
            arguments[self.max_tokens_param] = max_tokens
        return arguments

    def _error(self, error: Exception) -> LLMError:
        """The one place an SDK or transport failure becomes one of our errors."""
        if isinstance(error, LLMError):
            return error
        if isinstance(error, openai.APIStatusError):
            return status_error(
                error.status_code,
                error.message,
                provider=self._name,
                retry_after=retry_after_from_headers(error.response.headers),
            )
        if isinstance(error, openai.APITimeoutError):
            return ProviderUnavailable("timed out", provider=self._name)
        if isinstance(error, openai.APIConnectionError):
            return ProviderUnavailable(f"cannot connect: {error.message}", provider=self._name)
        if isinstance(error, openai.APIError):
            return ProviderUnavailable(f"error in the stream: {error.message}", provider=self._name)
        if isinstance(error, httpx2.HTTPError):
            return ProviderUnavailable(f"transport error: {error}", provider=self._name)
        # JSON that does not parse, or that is not the chat-completions shape.
        return ProviderUnavailable(f"malformed response: {error!r}", provider=self._name)

    async def complete(self, request: CompletionRequest) -> Completion:
        create = cast(Any, self._client.chat.completions.create)
        try:
            response = await create(**self._arguments(request))
        except _CALL_ERRORS as e:
            raise self._error(e) from e
        try:
            choice = response.choices[0]
            message = choice.message
            calls = tuple(
                ToolCall.from_json(call.id, call.function.name, call.function.arguments or "")
                for call in (message.tool_calls or ())
                if getattr(call, "function", None) is not None
            )
            return Completion(
                text=strip_think(message.content or ""),
                tool_calls=calls,
                finish_reason=_FINISH.get(choice.finish_reason or "stop", "other"),
                usage=_usage(response.usage),
                model=response.model or "",
                provider=self._name,
            )
        except _READ_ERRORS as e:
            raise self._error(e) from e

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        create = cast(Any, self._client.chat.completions.create)
        try:
            chunks = await create(
                **self._arguments(request), stream=True, stream_options={"include_usage": True}
            )
        except _CALL_ERRORS as e:
            raise self._error(e) from e
        state = _StreamState(self._name)
        try:
            iterator = chunks.__aiter__()
            while True:
                try:
                    events = state.read(await iterator.__anext__())
                except StopAsyncIteration:
                    break
                except _READ_ERRORS as e:
                    raise self._error(e) from e
                for event in events:
                    yield event
        finally:
            await chunks.close()
        for event in state.finish():
            yield event

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not self.embedding_model:
            raise EmbeddingsUnsupported("no embedding model configured", provider=self._name)
        if not texts:
            return []
        try:
            response = await self._client.embeddings.create(
                model=self.embedding_model, input=list(texts), encoding_format="float"
            )
            vectors = [list(item.embedding) for item in sorted(response.data, key=_index)]
        except _READ_ERRORS as e:
            raise self._error(e) from e
        if len(vectors) != len(texts):
            raise ProviderUnavailable(
                f"{len(vectors)} embeddings for {len(texts)} texts", provider=self._name
            )
        return vectors

    async def aclose(self) -> None:
        await self._client.close()


def _index(item: Any) -> int:
    return int(item.index)
