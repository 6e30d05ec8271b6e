"""Anthropic's Messages API with the ``anthropic`` SDK's ``AsyncAnthropic``.

System messages become the ``system`` parameter; tool results go back as ``tool_result``
blocks of one user turn (parallel calls answered together, as the API asks); thinking and
redacted-thinking blocks are read past and never reach the text. The Messages API of the
SDK 2.x takes no sampling temperature, so ``CompletionRequest.temperature`` is not sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import anthropic
import httpx2
from anthropic import AsyncAnthropic

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
    RateLimited,
    retry_after_from_headers,
    status_error,
)
from pipeline.llm.thinking import ThinkFilter, strip_think

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096  # the API requires a cap; General Bots sends 4096 too

# Failures of the call itself, and those of reading what came back (a body that is not
# JSON, or JSON that is not the Messages API's shape): both are the provider's fault.
_CALL_ERRORS = (anthropic.AnthropicError, httpx2.HTTPError, ValueError)
_READ_ERRORS = (*_CALL_ERRORS, AttributeError, IndexError, KeyError, TypeError)

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def anthropic_messages(
    messages: Sequence[Message], *, vision: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt and the turns, adjacent turns of one role joined into one; a
    user's images as base64 ``image`` blocks before their text when ``vision`` (as
    Anthropic advises), else a note in their place."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        if isinstance(message, SystemMessage):
            system.append(message.text)
        elif isinstance(message, UserMessage):
            add("user", _user_blocks(message, vision))
        elif isinstance(message, AssistantMessage):
            blocks: list[dict[str, Any]] = []
            if message.text:
                blocks.append({"type": "text", "text": message.text})
            blocks.extend(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": call.arguments if call.arguments is not None else {},
                }
                for call in message.tool_calls
            )
            add("assistant", blocks)
        elif isinstance(message, ToolResultMessage):
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            if message.is_error:
                block["is_error"] = True
            add("user", [block])
    return "\n\n".join(system), turns


def _user_blocks(message: UserMessage, vision: bool) -> list[dict[str, Any]]:
    if not message.images:
        return [{"type": "text", "text": message.text}]
    if not vision:
        note = unseen_images_note(len(message.images))
        return [{"type": "text", "text": f"{message.text}\n\n{note}" if message.text else note}]
    blocks: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": image.media_type, "data": image.base64()},
        }
        for image in message.images
    ]
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    return blocks


def anthropic_tools(tools: Sequence[ToolDefinition]) -> list[dict[str, Any]]:
    return [
        {"name": tool.name, "description": tool.description, "input_schema": dict(tool.parameters)}
        for tool in tools
    ]


def _usage(usage: Any, *, input_tokens: int = 0, cached: int = 0) -> Usage:
    """Usage from a message (or a message_delta, whose counts are cumulative)."""
    read = getattr(usage, "cache_read_input_tokens", None)
    written = getattr(usage, "cache_creation_input_tokens", None)
    fresh = getattr(usage, "input_tokens", None)
    if fresh is not None or read is not None or written is not None:
        input_tokens = int(fresh or 0) + int(read or 0) + int(written or 0)
        cached = int(read or 0)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        cached_input_tokens=cached,
    )


def _tool_call(block_id: str, name: str, arguments: Mapping[str, Any] | None) -> ToolCall:
    data = dict(arguments or {})
    return ToolCall(id=block_id, name=name, raw_arguments=json.dumps(data), arguments=data)


@dataclass(slots=True)
class _Block:
    kind: str
    id: str = ""
    name: str = ""
    input: Any = None
    partial_json: str = ""

    def tool_call(self) -> ToolCall:
        if not self.partial_json.strip():
            return _tool_call(
                self.id, self.name, self.input if isinstance(self.input, Mapping) else {}
            )
        return ToolCall.from_json(self.id, self.name, self.partial_json)


class _StreamState:
    """What a stream has said so far. Tool calls are given once the message has stopped,
    as the OpenAI provider gives them: a cut stream never leaves a call half-announced."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.thinking = ThinkFilter()
        self.text: list[str] = []
        self.calls: list[ToolCall] = []
        self.blocks: dict[int, _Block] = {}
        self.usage = Usage()
        self.stop_reason: str | None = None
        self.model = ""
        self.stopped = False

    def _text(self, piece: str) -> list[StreamEvent]:
        visible = self.thinking.feed(piece)
        if not visible:
            return []
        self.text.append(visible)
        return [TextDelta(visible)]

    def read(self, event: Any) -> list[StreamEvent]:
        """The events one server-sent event gives."""
        kind = event.type
        if kind == "message_start":
            self.model = event.message.model or self.model
            self.usage = _usage(event.message.usage)
        elif kind == "content_block_start":
            block = event.content_block
            self.blocks[event.index] = _Block(
                kind=block.type,
                id=getattr(block, "id", "") or "",
                name=getattr(block, "name", "") or "",
                input=getattr(block, "input", None),
            )
            if block.type == "text" and block.text:
                return self._text(block.text)
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return self._text(delta.text)
            if delta.type == "input_json_delta" and event.index in self.blocks:
                self.blocks[event.index].partial_json += delta.partial_json
            # thinking_delta and signature_delta: reasoning, never shown.
        elif kind == "content_block_stop":
            current = self.blocks.pop(event.index, None)
            if current is not None and current.kind == "tool_use":
                self.calls.append(current.tool_call())
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self.usage = _usage(
                event.usage,
                input_tokens=self.usage.input_tokens,
                cached=self.usage.cached_input_tokens,
            )
        elif kind == "message_stop":
            self.stopped = True
        return []

    def finish(self) -> list[StreamEvent]:
        """The last events, once the stream has ended; one that never stopped was cut."""
        if not self.stopped:
            raise ProviderUnavailable(
                "the stream ended before the answer was complete", provider=self.provider
            )
        events: list[StreamEvent] = []
        rest = self.thinking.flush()
        if rest:
            self.text.append(rest)
            events.append(TextDelta(rest))
        events.extend(ToolCallReady(call) for call in self.calls)
        events.append(
            StreamDone(
                Completion(
                    text="".join(self.text),
                    tool_calls=tuple(self.calls),
                    finish_reason=_FINISH.get(self.stop_reason or "end_turn", "other"),
                    usage=self.usage,
                    model=self.model,
                    provider=self.provider,
                )
            )
        )
        return events


class AnthropicProvider:
    """Claude through the Messages API at ``base_url`` (Anthropic's own when not given)."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str = ANTHROPIC_BASE_URL,
        name: str = "anthropic",
        max_tokens: int | None = None,
        timeout: float = 60.0,
        vision: bool = False,
    ) -> None:
        self._name = name
        self.model = model
        self.base_url = base_url
        self.max_tokens = max_tokens
        self.vision = vision  # the model reads images (llm-vision in config.csv)
        # An explicit key and URL: the SDK would otherwise look for credentials in the
        # environment and in profile files of its own.
        self._client = AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    @property
    def name(self) -> str:
        return self._name

    def _arguments(self, request: CompletionRequest) -> dict[str, Any]:
        system, turns = anthropic_messages(request.messages, vision=self.vision)
        max_tokens = request.max_tokens if request.max_tokens is not None else self.max_tokens
        arguments: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": turns,
            "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            arguments["system"] = system
        if request.tools:
            arguments["tools"] = anthropic_tools(request.tools)
        return arguments

    def _error(self, error: Exception) -> LLMError:
        """The one place an SDK or transport failure becomes one of our errors."""
        if isinstance(error, LLMError):
            return error
        if isinstance(error, anthropic.APIStatusError):
            if error.status_code < 400:
                # An ``error`` event inside a stream that began with 200.
                kind, message = _error_body(error.body)
                if kind == "rate_limit_error":
                    return RateLimited(f"{kind}: {message}", provider=self._name)
                return ProviderUnavailable(f"{kind}: {message}", provider=self._name)
            return status_error(
                error.status_code,
                error.message,
                provider=self._name,
                retry_after=retry_after_from_headers(error.response.headers),
            )
        if isinstance(error, anthropic.APITimeoutError):
            return ProviderUnavailable("timed out", provider=self._name)
        if isinstance(error, anthropic.APIConnectionError):
            return ProviderUnavailable(f"cannot connect: {error.message}", provider=self._name)
        if isinstance(error, anthropic.APIError):
            return ProviderUnavailable(f"error in the stream: {error.message}", provider=self._name)
        if isinstance(error, httpx2.HTTPError):
            return ProviderUnavailable(f"transport error: {error}", provider=self._name)
        return ProviderUnavailable(f"malformed response: {error!r}", provider=self._name)

    async def complete(self, request: CompletionRequest) -> Completion:
        create = cast(Any, self._client.messages.create)
        try:
            response = await create(**self._arguments(request))
        except _CALL_ERRORS as e:
            raise self._error(e) from e
        try:
            text: list[str] = []
            calls: list[ToolCall] = []
            for block in response.content:
                if block.type == "text":
                    text.append(block.text)
                elif block.type == "tool_use":
                    calls.append(_tool_call(block.id, block.name, block.input))
                # thinking and redacted_thinking blocks: reasoning, never shown.
            return Completion(
                text=strip_think("".join(text)),
                tool_calls=tuple(calls),
                finish_reason=_FINISH.get(response.stop_reason or "end_turn", "other"),
                usage=_usage(response.usage),
                model=response.model or "",
                provider=self._name,
            )
        except _READ_ERRORS as e:
            raise self._error(e) from e

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        create = cast(Any, self._client.messages.create)
        try:
            stream = await create(**self._arguments(request), stream=True)
        except _CALL_ERRORS as e:
            raise self._error(e) from e
        state = _StreamState(self._name)
        try:
            iterator = stream.__aiter__()
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
            await stream.close()
        for event in state.finish():
            yield event

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise EmbeddingsUnsupported("Anthropic has no embeddings API", provider=self._name)

    async def aclose(self) -> None:
        await self._client.close()


def _error_body(body: object) -> tuple[str, str]:
    """``(type, message)`` of an Anthropic error body."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return str(error.get("type") or "error"), str(error.get("message") or "")
    return "error", str(body or "")
