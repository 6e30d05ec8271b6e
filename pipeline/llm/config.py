"""Which providers a bot uses, from its ``config.csv`` and the process environment.

The rows are General Bots' (``llm-provider``, ``llm-url`` (or ``llm-server-url``),
``llm-key`` (or ``llm-api-key``), ``llm-model``,
``llm-temperature``, ``llm-max-tokens`` or ``max-tokens``, ``llm-endpoint-path``,
``llm-fallback-provider``, ``llm-fallback-model``, ``history-limit``, ``embedding-url``,
``embedding-key``, ``embedding-model``); ours follow their pattern: ``llm-fallback-url``,
``llm-fallback-key``, ``llm-timeout`` (the request's deadline, seconds), ``llm-retries``
(attempts per provider) and ``llm-vision`` (``llm-fallback-vision``, ``LLM_VISION`` in the
environment): ``true`` for a model that reads images (General Bots sends images to a
separate BotModels service instead, so it has no row of its own for this). Any value may
be ``${ENV_NAME}``.

The environment gives process-wide defaults for a bot that names no provider of its own:
``LLM_PROVIDER``, ``LLM_URL``, ``LLM_KEY``, ``LLM_MODEL`` (General Bots' names), then
``OPENAI_API_KEY`` and ``ANTHROPIC_API_KEY``, each a provider of the default list in that
order.

Fail closed: a provider without a key is not built, and a key from the environment is only
ever sent to the URL the environment (or the provider's own default) names: a bot that
points ``llm-url`` elsewhere brings its own ``llm-key``. A server that needs no key takes
``llm-key,none`` (as General Bots' default bot has it), or runs on this machine.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urlsplit

from config.env_values import MissingVariable, expand
from pipeline.llm.anthropic_provider import ANTHROPIC_BASE_URL, AnthropicProvider
from pipeline.llm.base import LLMProvider
from pipeline.llm.errors import EmbeddingsUnsupported, ProviderNotConfigured
from pipeline.llm.fallback import DEFAULT_DEADLINE, FallbackProvider, RetryPolicy
from pipeline.llm.openai_provider import OPENAI_BASE_URL, OpenAIProvider

Kind = Literal["openai", "anthropic", "compatible"]

DEFAULT_HISTORY_LIMIT = 10  # General Bots' default for history-limit
NO_KEY = "none"


@dataclass(frozen=True, slots=True)
class _Known:
    kind: Kind
    url: str
    env_key: str | None = None
    model: str | None = None


# llm-provider values General Bots documents that speak OpenAI's or Anthropic's API.
_KNOWN: dict[str, _Known] = {
    "openai": _Known("openai", OPENAI_BASE_URL, "OPENAI_API_KEY", "gpt-4o-mini"),
    "anthropic": _Known("anthropic", ANTHROPIC_BASE_URL, "ANTHROPIC_API_KEY", "claude-sonnet-4-5"),
    "claude": _Known("anthropic", ANTHROPIC_BASE_URL, "ANTHROPIC_API_KEY", "claude-sonnet-4-5"),
    "groq": _Known("compatible", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "deepseek": _Known("compatible", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "mistral": _Known("compatible", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "xai": _Known("compatible", "https://api.x.ai/v1", "XAI_API_KEY"),
    "cerebras": _Known("compatible", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "openrouter": _Known("compatible", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "glm": _Known("compatible", "https://api.z.ai/api/paas/v4", "ZAI_API_KEY"),
    "ollama": _Known("compatible", "http://localhost:11434/v1"),
    "lmstudio": _Known("compatible", "http://localhost:1234/v1"),
    "vllm": _Known("compatible", "http://localhost:8000/v1"),
    "llamacpp": _Known("compatible", "http://localhost:8081/v1"),
    "local": _Known("compatible", "http://localhost:8081/v1"),  # General Bots' llama.cpp
    "compatible": _Known("compatible", ""),
}


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One provider, resolved: what to build and where it sends requests."""

    kind: Kind
    name: str
    base_url: str
    model: str
    api_key: str = field(repr=False)
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = DEFAULT_DEADLINE
    vision: bool = False  # the model reads images: llm-vision (llm-fallback-vision), LLM_VISION


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """A bot's model configuration; ``problems`` says why a configured provider is off."""

    providers: tuple[ProviderSettings, ...]
    deadline: float = DEFAULT_DEADLINE
    attempts: int = 3
    history_limit: int = DEFAULT_HISTORY_LIMIT
    embedding: ProviderSettings | None = None
    problems: tuple[str, ...] = ()


def _normalize(key: str) -> str:
    return re.sub(r"[\s_-]+", "-", key.strip().lower())


class _Rows:
    """The bot's rows by normalized key, ``${VAR}`` expanded on read."""

    def __init__(self, config: Mapping[str, str], environ: Mapping[str, str]) -> None:
        self._rows = {_normalize(k): v.strip() for k, v in config.items() if v and v.strip()}
        self._environ = environ

    def get(self, *keys: str) -> str | None:
        for key in keys:
            value = self._rows.get(key)
            if value:
                try:
                    return expand(value, self._environ).strip() or None
                except MissingVariable as e:
                    raise ProviderNotConfigured(f"{key}: {e}") from e
        return None

    def number(self, key: str, *more: str) -> float | None:
        value = self.get(key, *more)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError as e:
            raise ProviderNotConfigured(f"{key}: not a number: {value!r}") from e


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def openai_base_url(url: str, endpoint_path: str | None = None) -> str:
    """The SDK's base URL from an ``llm-url`` that may name the whole endpoint.

    General Bots takes ``http://host:8081``, ``…/v1`` and ``…/v1/chat/completions``
    alike (and ``llm-endpoint-path`` after a bare host); the SDK wants ``…/v1``.
    """
    url = url.strip().rstrip("/")
    if endpoint_path:
        path = "/" + endpoint_path.strip().strip("/")
        if not url.endswith(path):
            url += path
    url = url.removesuffix("/chat/completions").removesuffix("/embeddings").rstrip("/")
    if not urlsplit(url).path.strip("/"):
        url += "/v1"
    return url


def anthropic_base_url(url: str) -> str:
    """The SDK's base URL (it adds ``/v1/messages``) from one that may include it."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/messages").removesuffix("/v1").rstrip("/")


def _detect(url: str) -> str:
    lowered = url.lower()
    if "anthropic" in lowered or "claude" in lowered:
        return "anthropic"
    if urlsplit(lowered).hostname == "api.openai.com":
        return "openai"
    return "compatible"


def _provider(
    rows: _Rows,
    environ: Mapping[str, str],
    prefix: str,
    *,
    from_environment: bool,
    temperature: float | None,
    max_tokens: int | None,
    timeout: float,
) -> ProviderSettings | None:
    """The provider the rows ``{prefix}-provider``/``-url``/``-key``/``-model`` describe.

    With ``from_environment`` the rows are absent and ``LLM_*`` stand in for them.
    ``None`` when nothing names a provider; :class:`ProviderNotConfigured` when one is
    named but cannot be used.
    """
    if from_environment:
        chosen = environ.get("LLM_PROVIDER", "").strip().lower() or None
        url = environ.get("LLM_URL", "").strip() or None
        key = environ.get("LLM_KEY", "").strip() or None
        model = environ.get("LLM_MODEL", "").strip() or None
        endpoint = None
        vision = _flag(environ.get("LLM_VISION"))
    else:
        chosen = (rows.get(f"{prefix}-provider") or "").lower() or None
        # General Bots' book names the local server's address llm-server-url.
        url = rows.get(f"{prefix}-url", f"{prefix}-server-url")
        key = rows.get(f"{prefix}-key", f"{prefix}-api-key")
        model = rows.get(f"{prefix}-model")
        endpoint = rows.get(f"{prefix}-endpoint-path")
        vision = _flag(rows.get(f"{prefix}-vision"))
    if chosen is None and url is None and key is None:
        return None
    label = "the environment's LLM_*" if from_environment else f"{prefix}-*"
    chosen = (chosen or (_detect(url) if url else "openai")).replace(".", "").replace("-", "")
    known = _KNOWN.get(chosen)
    if known is None:
        raise ProviderNotConfigured(
            f"{label}: provider {chosen!r} is not supported "
            f"(use one of {', '.join(sorted(_KNOWN))}, or an OpenAI-compatible llm-url)"
        )
    own_url = url is not None
    url = url or known.url
    if not url:
        raise ProviderNotConfigured(f"{label}: an OpenAI-compatible provider needs a url")
    if key is None and not own_url and known.env_key:
        # A provider-wide key goes only to that provider's own address.
        key = environ.get(known.env_key, "").strip() or None
    if key is None or key.lower() == NO_KEY:
        # No key: only for a server on this machine, or one the bot itself names with
        # ``none``; never for a provider's public default address.
        if not (_is_local(url) or (key is not None and own_url)):
            raise ProviderNotConfigured(
                f"{label}: no key for {chosen} at {url} "
                f"(set {prefix}-key, or {prefix}-key,none for a server without authentication)"
            )
        key = "no-key"  # the SDK insists on one; the server ignores it
    model = model or known.model
    if not model:
        raise ProviderNotConfigured(f"{label}: {chosen} needs a model ({prefix}-model)")
    kind = known.kind
    base_url = anthropic_base_url(url) if kind == "anthropic" else openai_base_url(url, endpoint)
    name = chosen if chosen != "compatible" else (urlsplit(base_url).hostname or "compatible")
    return ProviderSettings(
        kind=kind,
        name=name,
        base_url=base_url,
        model=model,
        api_key=key,
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=timeout,
        vision=vision,
    )


def _flag(value: str | None) -> bool:
    """A yes/no row: ``true``, ``yes``, ``on``, ``1`` (General Bots' spellings) are yes."""
    return (value or "").strip().lower() in ("true", "yes", "on", "1", "sim")


def _environment_defaults(
    environ: Mapping[str, str],
    problems: list[str],
    *,
    temperature: float | None,
    max_tokens: int | None,
    timeout: float,
) -> list[ProviderSettings]:
    """The process-wide list: ``LLM_*``, then OpenAI and Anthropic by their keys."""
    found: list[ProviderSettings] = []
    try:
        general = _provider(
            _Rows({}, environ),
            environ,
            "llm",
            from_environment=True,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=timeout,
        )
    except ProviderNotConfigured as e:
        problems.append(str(e))
        general = None
    if general is not None:
        found.append(general)
    for kind, variable in (("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")):
        known = _KNOWN[kind]
        key = environ.get(variable, "").strip()
        if not key or any(p.base_url == known.url for p in found):
            continue
        found.append(
            ProviderSettings(
                kind=known.kind,
                name=kind,
                base_url=known.url,
                model=known.model or "",
                api_key=key,
                temperature=temperature,
                max_tokens=max_tokens,
                timeout=timeout,
            )
        )
    return found


def _embedding(rows: _Rows, environ: Mapping[str, str], timeout: float) -> ProviderSettings | None:
    url = rows.get("embedding-url")
    key = rows.get("embedding-key")
    model = rows.get("embedding-model")
    if url is None:
        if model is None or not environ.get("OPENAI_API_KEY", "").strip():
            return None
        url, key = OPENAI_BASE_URL, environ["OPENAI_API_KEY"].strip()
    if key is None or key.lower() == NO_KEY:
        if key is None and not _is_local(url):
            raise ProviderNotConfigured(
                f"embedding-url {url} has no embedding-key (embedding-key,none if it needs none)"
            )
        key = "no-key"
    if model is None:
        raise ProviderNotConfigured("embedding-url is set but embedding-model is not")
    return ProviderSettings(
        kind="compatible",
        name="embedding",
        base_url=openai_base_url(url),
        model=model,
        api_key=key,
        timeout=timeout,
    )


def llm_settings(config: Mapping[str, str], environ: Mapping[str, str]) -> LLMSettings:
    """Resolve a bot's providers from its ``config.csv`` rows and the environment.

    A provider that is named but unusable is left out, its reason in ``problems``.
    """
    rows = _Rows(config, environ)
    problems: list[str] = []

    def number(default: float | None, *keys: str) -> float | None:
        try:
            value = rows.number(*keys)
        except ProviderNotConfigured as e:
            problems.append(str(e))
            return default
        return default if value is None or (value <= 0 and default is not None) else value

    temperature = number(None, "llm-temperature")
    max_tokens_value = number(None, "llm-max-tokens", "max-tokens")
    max_tokens = int(max_tokens_value) if max_tokens_value else None
    deadline = number(DEFAULT_DEADLINE, "llm-timeout") or DEFAULT_DEADLINE
    attempts = int(number(3, "llm-retries") or 3)
    history_limit = int(number(DEFAULT_HISTORY_LIMIT, "history-limit") or DEFAULT_HISTORY_LIMIT)

    providers: list[ProviderSettings] = []
    named = False
    for prefix in ("llm", "llm-fallback"):
        try:
            found = _provider(
                rows,
                environ,
                prefix,
                from_environment=False,
                temperature=temperature,
                max_tokens=max_tokens,
                timeout=deadline,
            )
        except ProviderNotConfigured as e:
            # A bot that names a provider it cannot use gets none: never another one instead.
            problems.append(str(e))
            named = named or prefix == "llm"
            continue
        if found is not None:
            named = named or prefix == "llm"
            providers.append(found)
    if not named:
        model = rows.get("llm-model")
        defaults = _environment_defaults(
            environ, problems, temperature=temperature, max_tokens=max_tokens, timeout=deadline
        )
        if defaults and model:
            defaults[0] = replace(defaults[0], model=model)
        vision = rows.get("llm-vision")
        if defaults and vision is not None:  # the bot says what the model it picked reads
            defaults[0] = replace(defaults[0], vision=_flag(vision))
        providers = defaults + providers
    try:
        embedding = _embedding(rows, environ, deadline)
    except ProviderNotConfigured as e:
        problems.append(str(e))
        embedding = None
    return LLMSettings(
        providers=tuple(providers),
        deadline=deadline,
        attempts=attempts,
        history_limit=history_limit,
        embedding=embedding,
        problems=tuple(problems),
    )


def build_provider(settings: ProviderSettings) -> LLMProvider:
    """The provider object for resolved settings (it opens no connection yet)."""
    if settings.kind == "anthropic":
        return AnthropicProvider(
            api_key=settings.api_key,
            model=settings.model,
            base_url=settings.base_url,
            name=settings.name,
            max_tokens=settings.max_tokens,
            timeout=settings.timeout,
            vision=settings.vision,
        )
    return OpenAIProvider(
        api_key=settings.api_key,
        model=settings.model,
        base_url=settings.base_url,
        name=settings.name,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        max_tokens_param="max_completion_tokens" if settings.kind == "openai" else "max_tokens",
        embedding_model=settings.model if settings.name == "embedding" else None,
        timeout=settings.timeout,
        vision=settings.vision,
    )


def provider_from_config(
    config: Mapping[str, str],
    environ: Mapping[str, str],
    *,
    policy: RetryPolicy | None = None,
) -> FallbackProvider:
    """The bot's providers as one fallback chain; :class:`ProviderNotConfigured` if none.

    Build it when the bot loads, not per turn: each provider holds an HTTP client.
    """
    settings = llm_settings(config, environ)
    if not settings.providers:
        why = "; ".join(settings.problems) or (
            "set llm-provider, llm-key and llm-model in the bot's config.csv, "
            "or OPENAI_API_KEY / ANTHROPIC_API_KEY / LLM_URL in the environment"
        )
        raise ProviderNotConfigured(f"no LLM provider configured: {why}")
    return FallbackProvider(
        [build_provider(p) for p in settings.providers],
        policy=policy or RetryPolicy(attempts=settings.attempts),
        deadline=settings.deadline,
    )


def embedder_from_config(config: Mapping[str, str], environ: Mapping[str, str]) -> LLMProvider:
    """The bot's embeddings endpoint; :class:`EmbeddingsUnsupported` when it has none."""
    settings = llm_settings(config, environ)
    if settings.embedding is None:
        raise EmbeddingsUnsupported(
            "no embeddings configured (embedding-url, embedding-key, embedding-model)"
            + (f": {'; '.join(settings.problems)}" if settings.problems else "")
        )
    return build_provider(settings.embedding)
