"""Model providers behind one contract: OpenAI, Anthropic and OpenAI-compatible servers.

``provider_from_config(bot_config, os.environ)`` gives a bot's providers as one
:class:`LLMProvider` (a fallback chain with retries and a deadline); requests and answers
are the types of :mod:`pipeline.llm.base`, failures the family of :mod:`pipeline.llm.errors`.
"""

from __future__ import annotations

from pipeline.llm.anthropic_provider import AnthropicProvider
from pipeline.llm.base import (
    AssistantMessage,
    Completion,
    CompletionRequest,
    FinishReason,
    ImagePart,
    LLMProvider,
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
)
from pipeline.llm.config import (
    LLMSettings,
    ProviderSettings,
    build_provider,
    embedder_from_config,
    llm_settings,
    provider_from_config,
)
from pipeline.llm.errors import (
    DeadlineExceeded,
    EmbeddingsUnsupported,
    LLMError,
    ProviderError,
    ProviderNotConfigured,
    ProviderUnavailable,
    RateLimited,
    RequestRefused,
)
from pipeline.llm.fallback import FallbackProvider, RetryPolicy
from pipeline.llm.openai_provider import OpenAIProvider
from pipeline.llm.thinking import ThinkFilter, strip_think

__all__ = [
    "AnthropicProvider",
    "AssistantMessage",
    "Completion",
    "CompletionRequest",
    "DeadlineExceeded",
    "EmbeddingsUnsupported",
    "FallbackProvider",
    "FinishReason",
    "ImagePart",
    "LLMError",
    "LLMProvider",
    "LLMSettings",
    "Message",
    "OpenAIProvider",
    "ProviderError",
    "ProviderNotConfigured",
    "ProviderSettings",
    "ProviderUnavailable",
    "RateLimited",
    "RequestRefused",
    "RetryPolicy",
    "StreamDone",
    "StreamEvent",
    "SystemMessage",
    "TextDelta",
    "ThinkFilter",
    "ToolCall",
    "ToolCallReady",
    "ToolDefinition",
    "ToolResultMessage",
    "Usage",
    "UserMessage",
    "build_provider",
    "embedder_from_config",
    "llm_settings",
    "provider_from_config",
    "strip_think",
]
