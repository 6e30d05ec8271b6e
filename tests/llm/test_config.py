"""A bot's providers from its config.csv rows (General Bots' keys) and the environment."""

from __future__ import annotations

import pytest

from basic import compile_source
from config.packages import parse_config_csv
from pipeline.llm import (
    CompletionRequest,
    EmbeddingsUnsupported,
    FallbackProvider,
    ProviderNotConfigured,
    ToolDefinition,
    UserMessage,
    embedder_from_config,
    llm_settings,
    provider_from_config,
)
from pipeline.llm.config import anthropic_base_url, openai_base_url
from pipeline.tools import tool_schemas
from tests.llm import fake_anthropic, fake_openai
from tests.llm.fake_anthropic import FakeAnthropic
from tests.llm.fake_openai import FakeOpenAI, embedding_of
from tests.llm.scripted import Answer

HELLO = CompletionRequest([UserMessage("hi")])


def test_general_bots_rows() -> None:
    config = parse_config_csv(
        "name,value\n"
        "LLM Provider,anthropic\n"
        "llm-url,https://api.anthropic.com/v1/messages\n"
        "llm-key,${SUPPORT_CLAUDE_KEY}\n"
        "llm-model,claude-sonnet-4-5\n"
        "llm-temperature,0.3\n"
        "llm-max-tokens,2048\n"
        "history-limit,6\n"
        "llm-timeout,20\n"
        "llm-retries,2\n"
        "llm-fallback-provider,groq\n"
        "llm-fallback-key,gsk-fallback\n"
        "llm-fallback-model,llama-3.3-70b\n"
    )
    settings = llm_settings(config, {"SUPPORT_CLAUDE_KEY": "sk-ant-1"})
    assert settings.problems == ()
    primary, fallback = settings.providers
    assert (primary.kind, primary.name, primary.base_url) == (
        "anthropic",
        "anthropic",
        "https://api.anthropic.com",
    )
    assert (primary.api_key, primary.model, primary.max_tokens) == (
        "sk-ant-1",
        "claude-sonnet-4-5",
        2048,
    )
    assert primary.temperature == 0.3
    assert (fallback.kind, fallback.name, fallback.base_url) == (
        "compatible",
        "groq",
        "https://api.groq.com/openai/v1",
    )
    assert (fallback.api_key, fallback.model) == ("gsk-fallback", "llama-3.3-70b")
    assert (settings.history_limit, settings.deadline, settings.attempts) == (6, 20.0, 2)
    assert "sk-ant-1" not in repr(primary)  # keys stay out of logs


def test_max_tokens_as_some_templates_spell_it() -> None:
    settings = llm_settings({"llm-key": "sk-1", "max-tokens": "512"}, {})
    assert settings.providers[0].max_tokens == 512
    assert settings.history_limit == 10  # General Bots' default


@pytest.mark.parametrize(
    ("url", "endpoint", "base"),
    [
        ("http://localhost:8081", None, "http://localhost:8081/v1"),
        ("http://localhost:11434/v1/", None, "http://localhost:11434/v1"),
        (
            "https://integrate.api.nvidia.com/v1/chat/completions",
            None,
            "https://integrate.api.nvidia.com/v1",
        ),
        (
            "https://open.bigmodel.cn/api/paas/v4/chat/completions",
            None,
            "https://open.bigmodel.cn/api/paas/v4",
        ),
        ("http://gpu:8000", "/v1/chat/completions", "http://gpu:8000/v1"),
        ("https://api.z.ai/api/paas/v4", "/chat/completions", "https://api.z.ai/api/paas/v4"),
        ("http://localhost:8082/v1/embeddings", None, "http://localhost:8082/v1"),
    ],
)
def test_openai_base_urls(url: str, endpoint: str | None, base: str) -> None:
    assert openai_base_url(url, endpoint) == base


@pytest.mark.parametrize(
    "url",
    [
        "https://api.anthropic.com",
        "https://api.anthropic.com/v1",
        "https://api.anthropic.com/v1/messages",
    ],
)
def test_anthropic_base_urls(url: str) -> None:
    assert anthropic_base_url(url) == "https://api.anthropic.com"


async def test_a_bot_on_an_openai_compatible_server(openai_server: FakeOpenAI) -> None:
    openai_server.script(Answer(text=("from the bot's server",)))
    chain = provider_from_config(
        {
            "llm-url": f"{openai_server.url}/v1/chat/completions",
            "llm-key": "${BOT_LLM_KEY}",
            "llm-model": "qwen3",
            "llm-temperature": "0.5",
            "llm-max-tokens": "64",
        },
        {"BOT_LLM_KEY": fake_openai.API_KEY},
    )
    completion = await chain.complete(HELLO)
    await chain.aclose()
    assert completion.text == "from the bot's server"
    [call] = openai_server.calls
    assert call.path == "/v1/chat/completions"
    assert call.headers["Authorization"] == f"Bearer {fake_openai.API_KEY}"
    assert (call.body["model"], call.body["temperature"], call.body["max_tokens"]) == (
        "qwen3",
        0.5,
        64,
    )


async def test_a_bot_on_anthropic(anthropic_server: FakeAnthropic) -> None:
    anthropic_server.script(Answer(text=("from claude",)))
    chain = provider_from_config(
        {
            "llm-provider": "anthropic",
            "llm-url": anthropic_server.url,
            "llm-key": fake_anthropic.API_KEY,
            "llm-model": "claude-test",
        },
        {},
    )
    assert (await chain.complete(HELLO)).text == "from claude"
    await chain.aclose()
    assert anthropic_server.calls[0].body["model"] == "claude-test"


def test_the_environment_gives_the_default_list() -> None:
    environ = {"OPENAI_API_KEY": "sk-env", "ANTHROPIC_API_KEY": "sk-ant-env"}
    openai, anthropic = llm_settings({}, environ).providers
    assert (openai.name, openai.base_url, openai.api_key, openai.model) == (
        "openai",
        "https://api.openai.com/v1",
        "sk-env",
        "gpt-4o-mini",
    )
    assert (anthropic.name, anthropic.base_url, anthropic.api_key) == (
        "anthropic",
        "https://api.anthropic.com",
        "sk-ant-env",
    )
    # A bot that only picks a model (as many templates do) gets it on the default provider.
    assert llm_settings({"llm-model": "gpt-5"}, environ).providers[0].model == "gpt-5"
    chain = provider_from_config({}, environ)
    assert isinstance(chain, FallbackProvider) and chain.name == "openai>anthropic"


def test_general_bots_environment_names_come_first() -> None:
    environ = {
        "LLM_URL": "http://127.0.0.1:8081/v1/chat/completions",
        "LLM_MODEL": "gpt-oss-20b",
        "OPENAI_API_KEY": "sk-env",
    }
    local, openai = llm_settings({}, environ).providers
    assert (local.base_url, local.model, local.api_key) == (
        "http://127.0.0.1:8081/v1",
        "gpt-oss-20b",
        "no-key",  # a server on this machine needs none
    )
    assert openai.api_key == "sk-env"
    # An unusable LLM_URL is reported and the rest of the list still stands.
    settings = llm_settings({}, {"LLM_URL": "https://llm.example.com", "OPENAI_API_KEY": "sk-env"})
    assert [p.name for p in settings.providers] == ["openai"]
    assert "no key" in settings.problems[0]


@pytest.mark.parametrize(
    ("config", "environ", "reason"),
    [
        ({}, {}, "no LLM provider configured"),
        ({"llm-provider": "openai"}, {}, "no key for openai"),
        ({"llm-provider": "anthropic", "llm-model": "claude-test"}, {}, "no key for anthropic"),
        # General Bots' default bot: "none" is for a server of the bot's own, never OpenAI's.
        ({"llm-key": "none", "llm-model": "model.gguf"}, {}, "no key for openai"),
        ({"llm-key": "${MISSING_KEY}"}, {}, "MISSING_KEY"),
        ({"llm-provider": "bedrock", "llm-key": "k"}, {}, "not supported"),
        ({"llm-url": "https://llm.example.com/v1", "llm-key": "k"}, {}, "needs a model"),
        # A process-wide key is never sent to a URL the bot chose.
        (
            {"llm-url": "https://llm.example.com/v1", "llm-model": "m"},
            {"OPENAI_API_KEY": "sk-env", "LLM_KEY": "k"},
            "no key",
        ),
        # A bot that names a provider it cannot use does not fall back to the environment's.
        (
            {"llm-provider": "groq", "llm-model": "m"},
            {"OPENAI_API_KEY": "sk-env"},
            "no key for groq",
        ),
    ],
)
def test_no_usable_key_no_provider(
    config: dict[str, str], environ: dict[str, str], reason: str
) -> None:
    with pytest.raises(ProviderNotConfigured, match=reason):
        provider_from_config(config, environ)


async def test_the_environment_key_stays_home(openai_server: FakeOpenAI) -> None:
    """A bot's own server on this machine is called without the process's OpenAI key."""
    openai_server.script(Answer(text=("ok",)))
    chain = provider_from_config(
        {"llm-provider": "openai", "llm-url": openai_server.url, "llm-model": "m"},
        {"OPENAI_API_KEY": "sk-process-secret"},
    )
    openai_server.api_key = "no-key"
    await chain.complete(HELLO)
    await chain.aclose()
    assert openai_server.calls[0].headers["Authorization"] == "Bearer no-key"


def test_an_explicit_none_key_for_the_bots_own_server() -> None:
    [server] = llm_settings(
        {"llm-url": "https://gpu.internal:8000", "llm-key": "none", "llm-model": "m"}, {}
    ).providers
    assert (server.base_url, server.api_key, server.name) == (
        "https://gpu.internal:8000/v1",
        "no-key",
        "gpu.internal",
    )


async def test_embeddings_from_config(openai_server: FakeOpenAI) -> None:
    embedder = embedder_from_config(
        {
            "embedding-url": f"{openai_server.url}/v1/embeddings",
            "embedding-key": fake_openai.API_KEY,
            "embedding-model": "bge-small-en-v1.5",
        },
        {},
    )
    assert await embedder.embed(["hello world"]) == [embedding_of("hello world")]
    await embedder.aclose()
    assert openai_server.calls[0].body["model"] == "bge-small-en-v1.5"
    with pytest.raises(EmbeddingsUnsupported):
        embedder_from_config({}, {})


def test_tool_definitions_from_basic_tools() -> None:
    program = compile_source(
        'PARAM city AS STRING DESCRIPTION "The city"\nDESCRIPTION "The weather in a city"\n',
        "weather.bas",
    )
    schemas = tool_schemas(program)
    from_both = ToolDefinition.from_schema(schemas)
    assert from_both == ToolDefinition.from_schema(schemas["openai"])
    assert from_both == ToolDefinition.from_schema(schemas["anthropic"])
    assert from_both.name == "weather" and from_both.description == "The weather in a city"
    assert from_both.parameters["properties"]["city"]["type"] == "string"
    with pytest.raises(ValueError):
        ToolDefinition.from_schema({"type": "object"})
