"""Which speech-to-text provider a bot uses, from its ``config.csv`` and the environment.

General Bots sends voice to its own BotModels service (``botmodels-url``), whose API is
not OpenAI's; of its speech keys only ``transcription-language`` fits here, and ours
follow its pattern and the ``llm-*`` rows': ``transcription-provider`` (``openai``,
``groq``, ``compatible`` or ``local``), ``transcription-url``, ``transcription-key``,
``transcription-model``, ``transcription-language`` (an ISO-639-1 code such as ``pt``, or
General Bots' ``pt-BR``, of which the language is sent), ``transcription-timeout``
(seconds) and ``transcription-max-duration`` (the longest note listened to, seconds).
Any value may be ``${ENV_NAME}``.

A bot that names no provider gets the process-wide one: ``TRANSCRIPTION_URL``,
``TRANSCRIPTION_KEY``, ``TRANSCRIPTION_MODEL``, then ``OPENAI_API_KEY`` (Whisper at
OpenAI), then ``GROQ_API_KEY`` (Whisper at Groq), then the offline engine when its extra
is installed (:mod:`pipeline.speech_local`).

As with the models, fail closed: a key from the environment is only sent to the address
it belongs to; a bot that points ``transcription-url`` elsewhere brings its own
``transcription-key`` (``none`` for a server without authentication, or one on this
machine).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from config.env_values import MissingVariable, expand
from config.packages import BotConfig
from pipeline.audio_decode import DEFAULT_MAX_SECONDS
from pipeline.llm.config import openai_base_url
from pipeline.llm.openai_provider import OPENAI_BASE_URL
from pipeline.speech import OpenAITranscriber, SpeechToText

log = logging.getLogger(__name__)

NO_KEY = "none"
DEFAULT_TIMEOUT = 60.0
GROQ_BASE_URL = "https://api.groq.com/openai/v1"

# provider -> (base URL, the environment's key for that URL, default model)
_KNOWN: dict[str, tuple[str, str | None, str | None]] = {
    "openai": (OPENAI_BASE_URL, "OPENAI_API_KEY", "whisper-1"),
    "groq": (GROQ_BASE_URL, "GROQ_API_KEY", "whisper-large-v3-turbo"),
    "compatible": ("", None, None),
}
LOCAL = "local"


class SpeechNotConfigured(Exception):
    """A provider is named but cannot be used (no key, no model, an unknown kind)."""


@dataclass(frozen=True, slots=True)
class SpeechSettings:
    """An OpenAI-compatible transcription endpoint, resolved."""

    name: str
    base_url: str
    model: str
    api_key: str
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class BotSpeech:
    """A bot's ears: its engine (``None``, with why in ``problem``), the language it
    expects and the longest note it listens to."""

    engine: SpeechToText | None = None
    problem: str | None = "no speech-to-text provider is configured"
    language: str | None = None
    max_seconds: float = DEFAULT_MAX_SECONDS
    timeout: float = DEFAULT_TIMEOUT
    # The bot's rows asked for speech to text that cannot be had (worth a warning).
    named: bool = False


class ConfigRows:
    """A bot's ``config.csv`` rows, ``${ENV_NAME}`` expanded; a row that cannot be used
    raises :class:`SpeechNotConfigured` naming it."""

    def __init__(self, config: BotConfig, environ: Mapping[str, str]) -> None:
        self._config = config
        self._environ = environ

    def get(self, key: str) -> str | None:
        value = (self._config.get(key) or "").strip()
        if not value:
            return None
        try:
            return expand(value, self._environ).strip() or None
        except MissingVariable as e:
            raise SpeechNotConfigured(f"{key}: {e}") from e

    def seconds(self, key: str, default: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError as e:
            raise SpeechNotConfigured(f"{key}: not a number: {value!r}") from e
        if number <= 0:
            raise SpeechNotConfigured(f"{key}: must be more than 0, not {value!r}")
        return number


def is_local(url: str) -> bool:
    """Whether ``url`` is on this machine (a server there may need no key)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def speech_settings(
    rows: ConfigRows, environ: Mapping[str, str], timeout: float
) -> SpeechSettings | str | None:
    """The bot's endpoint, :data:`LOCAL` for the offline engine, ``None`` for none named.

    Raises :class:`SpeechNotConfigured`.
    """
    chosen = (rows.get("transcription-provider") or "").lower() or None
    url = rows.get("transcription-url")
    key = rows.get("transcription-key")
    model = rows.get("transcription-model")
    if chosen == LOCAL:
        return LOCAL
    if chosen is None and url is None and key is None:
        return _from_environment(environ, timeout)
    if chosen is None:
        chosen = _detect(url)
    if chosen not in _KNOWN:
        raise SpeechNotConfigured(
            f"transcription-provider {chosen!r} is not supported "
            f"(use one of {', '.join([*_KNOWN, LOCAL])})"
        )
    known_url, env_key, known_model = _KNOWN[chosen]
    own_url = url is not None
    url = url or known_url
    if not url:
        raise SpeechNotConfigured("transcription-provider compatible needs a transcription-url")
    key = endpoint_key(
        key,
        provider=chosen,
        url=url,
        own_url=own_url,
        env_key=env_key,
        environ=environ,
        row="transcription-key",
    )
    model = model or known_model
    if not model:
        raise SpeechNotConfigured(f"{chosen} needs a transcription-model")
    name = chosen if chosen != "compatible" else (urlsplit(url).hostname or "compatible")
    return SpeechSettings(name, sdk_base_url(url), model, key, timeout)


def endpoint_key(
    key: str | None,
    *,
    provider: str,
    url: str,
    own_url: bool,
    env_key: str | None,
    environ: Mapping[str, str],
    row: str,
) -> str:
    """The key sent to ``url``: the bot's ``row``; else, only to the provider's own URL
    (``own_url`` false), the environment's ``env_key``; ``none``, or no key at all, only
    to a server on this machine or to a URL the bot named with ``none``.

    Raises :class:`SpeechNotConfigured`.
    """
    if key is None and not own_url and env_key:
        key = environ.get(env_key, "").strip() or None  # only to that provider's own URL
    if key is None or key.lower() == NO_KEY:
        if not (is_local(url) or (key is not None and own_url)):
            raise SpeechNotConfigured(
                f"no key for {provider} at {url} (set {row}, or {row},none for a server"
                " without authentication)"
            )
        key = "no-key"  # the SDK insists on one; the server ignores it
    return key


def sdk_base_url(url: str, endpoint: str = "/audio/transcriptions") -> str:
    """The SDK's base URL from one that may name the whole ``endpoint`` (``…/v1``,
    ``…/v1/audio/transcriptions`` and a bare host alike)."""
    return openai_base_url(url.strip().rstrip("/").removesuffix(endpoint))


def _detect(url: str | None) -> str:
    host = (urlsplit(url).hostname or "") if url else "api.openai.com"
    if host == "api.openai.com":
        return "openai"
    return "groq" if host.endswith("groq.com") else "compatible"


def _from_environment(environ: Mapping[str, str], timeout: float) -> SpeechSettings | None:
    url = environ.get("TRANSCRIPTION_URL", "").strip()
    if url:
        key = environ.get("TRANSCRIPTION_KEY", "").strip() or "no-key"
        model = environ.get("TRANSCRIPTION_MODEL", "").strip() or "whisper-1"
        name = urlsplit(url).hostname or "transcription"
        return SpeechSettings(name, sdk_base_url(url), model, key, timeout)
    for provider in ("openai", "groq"):
        base_url, env_key, default_model = _KNOWN[provider]
        env_value = environ.get(env_key or "", "").strip()
        if env_value:
            chosen = environ.get("TRANSCRIPTION_MODEL", "").strip() or default_model or ""
            return SpeechSettings(provider, base_url, chosen, env_value, timeout)
    return None


def language_of(value: str | None) -> str | None:
    """``pt-BR`` (General Bots' spelling) → ``pt``: the endpoints take ISO-639-1."""
    if not value:
        return None
    return value.replace("_", "-").split("-", 1)[0].strip().lower() or None


def bot_speech(config: BotConfig, environ: Mapping[str, str]) -> BotSpeech:
    """The bot's speech-to-text from its rows and the environment (see the module's doc).

    Builds an HTTP client (no connection yet); a configuration that cannot be used gives
    no engine, with the reason in ``problem``.
    """
    rows = ConfigRows(config, environ)
    try:
        language = language_of(rows.get("transcription-language"))
        max_seconds = rows.seconds("transcription-max-duration", DEFAULT_MAX_SECONDS)
        timeout = rows.seconds("transcription-timeout", DEFAULT_TIMEOUT)
        settings = speech_settings(rows, environ, timeout)
    except SpeechNotConfigured as e:
        return BotSpeech(problem=str(e), named=True)
    if settings is None or settings == LOCAL:
        from pipeline import speech_local

        local = speech_local.offline_engine()
        if local is None:
            problem = (
                "transcription-provider local: the offline speech extra is not installed"
                if settings == LOCAL
                else "no speech-to-text provider is configured (transcription-url and"
                " transcription-key in config.csv, or OPENAI_API_KEY in the environment)"
            )
            return BotSpeech(
                problem=problem,
                language=language,
                max_seconds=max_seconds,
                named=settings == LOCAL,
            )
        return BotSpeech(local, None, language, max_seconds, timeout)
    assert isinstance(settings, SpeechSettings)
    engine = OpenAITranscriber(
        api_key=settings.api_key,
        model=settings.model,
        base_url=settings.base_url,
        name=settings.name,
        timeout=settings.timeout,
    )
    return BotSpeech(engine, None, language, max_seconds, timeout)
