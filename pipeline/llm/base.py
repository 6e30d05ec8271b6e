"""The model-provider contract: one request shape, one answer shape, whatever the provider.

A :class:`CompletionRequest` holds the conversation as typed messages (system, user,
assistant text and tool calls, tool results) and the tools as JSON schemas. A provider
answers it whole (:meth:`LLMProvider.complete` gives a :class:`Completion`) or as a stream
(:meth:`LLMProvider.stream` yields :class:`TextDelta`, :class:`ToolCallReady` for each tool
call once its arguments are complete, and a final :class:`StreamDone` carrying the whole
:class:`Completion` with its usage and finish reason). Reasoning (``<think>`` blocks,
Anthropic thinking blocks) never appears in either.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A function the model may call: its name, what it does, its arguments' JSON schema."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> ToolDefinition:
        """Read an OpenAI function tool, an Anthropic tool, or ``{"name", "openai", "anthropic"}``.

        The last is what ``pipeline.tools.tool_schemas`` (and ``botserver check --tools``)
        produces for a BASIC tool.
        """
        if "openai" in schema and isinstance(schema["openai"], Mapping):
            return cls.from_schema(schema["openai"])
        if isinstance(schema.get("function"), Mapping):
            function = schema["function"]
            return cls(
                name=str(function["name"]),
                description=str(function.get("description") or ""),
                parameters=dict(function.get("parameters") or {"type": "object"}),
            )
        if "name" in schema and "input_schema" in schema:
            return cls(
                name=str(schema["name"]),
                description=str(schema.get("description") or ""),
                parameters=dict(schema["input_schema"]),
            )
        if "name" in schema and "parameters" in schema:
            return cls(
                name=str(schema["name"]),
                description=str(schema.get("description") or ""),
                parameters=dict(schema["parameters"]),
            )
        raise ValueError(f"not a tool schema: {sorted(schema)!r}")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for.

    ``arguments`` is the parsed JSON object, or ``None`` when the model's JSON was not an
    object (the tool loop sends that back to the model as an error); ``raw_arguments`` is
    the text as the model wrote it.
    """

    id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, id: str, name: str, raw_arguments: str) -> ToolCall:
        """A call from the model's argument text (empty text is no arguments)."""
        text = raw_arguments.strip() or "{}"
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return cls(
            id=id,
            name=name,
            raw_arguments=raw_arguments,
            arguments=parsed if isinstance(parsed, dict) else None,
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a request used, as the provider counted them.

    ``input_tokens`` includes prompt tokens read from or written to the provider's cache
    (``cached_input_tokens`` of them read), so the figure means the same across providers.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class SystemMessage:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image the user sent, for a vision model: its bytes (already normalized, see
    :mod:`pipeline.images`) and their content type."""

    data: bytes = field(repr=False)
    media_type: str

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.base64()}"


@dataclass(frozen=True, slots=True)
class UserMessage:
    """What the user said, with the images they sent (seen only by a provider configured
    as vision-capable; another is told how many it cannot see)."""

    text: str
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    """What the model said before: its text and the tool calls it made."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolResultMessage:
    """A tool's answer to the call ``tool_call_id`` (``is_error`` when the tool failed)."""

    tool_call_id: str
    content: str
    name: str = ""
    is_error: bool = False


Message = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage


def unseen_images_note(count: int) -> str:
    """What a provider that cannot see images says in their place, so that the model
    knows something was sent (and does not pretend to have seen it)."""
    what = "an image" if count == 1 else f"{count} images"
    return f"[The user sent {what} here, which this model cannot see.]"


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One model request. Unset options take the provider's configured defaults."""

    messages: Sequence[Message]
    tools: Sequence[ToolDefinition] = ()
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer: visible text, tool calls (in the order the model made them), usage."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None
    model: str = ""
    provider: str = ""


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of visible text, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallReady:
    """A tool call whose arguments arrived whole (parallel calls come one event each)."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class StreamDone:
    """The last event of a stream: the whole answer, its usage and finish reason."""

    completion: Completion


StreamEvent = TextDelta | ToolCallReady | StreamDone


@runtime_checkable
class LLMProvider(Protocol):
    """A model provider. Failures raise :class:`pipeline.llm.errors.LLMError` subclasses."""

    @property
    def name(self) -> str:
        """A short name for logs: ``openai``, ``anthropic``, ``groq``…"""
        ...

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer the request whole."""
        ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Answer as it is produced; the last event is a :class:`StreamDone`.

        A stream that breaks off, or that the provider sends malformed, raises
        :class:`pipeline.llm.errors.ProviderUnavailable`.
        """
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; :class:`EmbeddingsUnsupported` where there are none."""
        ...

    async def aclose(self) -> None:
        """Close the provider's HTTP connections."""
        ...
