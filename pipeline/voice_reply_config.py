"""Whether a bot speaks its replies, and through which text-to-speech provider.

``voice-replies`` in the bot's ``config.csv``: ``false`` (the default), ``true`` (a
message that was a voice note or an audio file is answered with a voice note too) or
``always`` (every turn's replies also go as a voice note, on the channels that take one).

General Bots' book names ``whatsapp-voice-response`` for WhatsApp calls through its own
BotModels service (whose API is not OpenAI's), and its engine reads no TTS rows; ours
follow the ``transcription-*`` rows' pattern: ``tts-provider`` (``openai`` or
``compatible``; from the URL when unset), ``tts-url``, ``tts-key``, ``tts-model``
(``tts-1``), ``tts-voice`` (``alloy``), ``tts-timeout`` (seconds, 30) and
``tts-max-chars`` (the longest text spoken, 1500; a longer reply is spoken up to the last
sentence that fits). Any value may be ``${ENV_NAME}``.

A bot that names no provider gets the process-wide one: ``TTS_URL``, ``TTS_KEY``,
``TTS_MODEL``, ``TTS_VOICE``, then ``OPENAI_API_KEY`` (OpenAI's ``tts-1``). As with the
models and speech to text, a key from the environment is only sent to the address it
belongs to; a bot that points ``tts-url`` elsewhere brings its own ``tts-key``
(``none`` for a server without authentication, or one on this machine).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from config.packages import BotConfig
from pipeline.llm.openai_provider import OPENAI_BASE_URL
from pipeline.speech_config import ConfigRows, SpeechNotConfigured, endpoint_key
from pipeline.speech_config import sdk_base_url as speech_base_url
from pipeline.speech_synthesis import OpenAISpeaker, TextToSpeech

DEFAULT_MODEL = "tts-1"
DEFAULT_VOICE = "alloy"
DEFAULT_TIMEOUT = 30.0  # General Bots' BotModels gives OpenAI's speech 30 s
DEFAULT_MAX_CHARS = 1500  # about a minute and a half of speech
MAX_CHARS = 4096  # OpenAI's limit for one request's input

_KNOWN = ("openai", "compatible")


class VoiceReplies(enum.Enum):
    """When a bot's replies also go as a voice note."""

    OFF = "false"
    TO_VOICE = "true"  # when the user's message was a voice note or an audio file
    ALWAYS = "always"


_MODES = {
    **dict.fromkeys(("", "false", "no", "off", "0", "none"), VoiceReplies.OFF),
    **dict.fromkeys(("true", "yes", "on", "1", "voice"), VoiceReplies.TO_VOICE),
    "always": VoiceReplies.ALWAYS,
}


@dataclass(frozen=True, slots=True)
class BotVoice:
    """A bot's voice: when it speaks, its engine (``None``, with why in ``problem``) and
    the longest text it speaks."""

    mode: VoiceReplies = VoiceReplies.OFF
    engine: TextToSpeech | None = None
    problem: str | None = None
    max_chars: int = DEFAULT_MAX_CHARS
    timeout: float = DEFAULT_TIMEOUT

    @property
    def on(self) -> bool:
        return self.mode is not VoiceReplies.OFF and self.engine is not None


def bot_voice(config: BotConfig, environ: Mapping[str, str]) -> BotVoice:
    """The bot's voice from its rows and the environment (see the module's doc).

    Builds an HTTP client (no connection yet) only for a bot that speaks; a configuration
    that cannot be used gives no engine, with the reason in ``problem``.
    """
    rows = ConfigRows(config, environ)
    try:
        mode = _mode(rows.get("voice-replies"))
        if mode is VoiceReplies.OFF:
            return BotVoice()
        timeout = rows.seconds("tts-timeout", DEFAULT_TIMEOUT)
        max_chars = min(int(rows.seconds("tts-max-chars", DEFAULT_MAX_CHARS)), MAX_CHARS)
        engine = _engine(rows, environ, timeout)
    except SpeechNotConfigured as e:
        return BotVoice(mode=VoiceReplies.OFF, problem=str(e))
    if engine is None:
        return BotVoice(
            mode=mode,
            problem="no text-to-speech provider is configured (tts-url and tts-key in"
            " config.csv, or OPENAI_API_KEY in the environment); replies go as text",
        )
    return BotVoice(mode, engine, None, max(max_chars, 1), timeout)


def _mode(value: str | None) -> VoiceReplies:
    mode = _MODES.get((value or "").strip().lower())
    if mode is None:
        raise SpeechNotConfigured(
            f"voice-replies {value!r} is not one of false, true, always: voice replies off"
        )
    return mode


def _engine(rows: ConfigRows, environ: Mapping[str, str], timeout: float) -> TextToSpeech | None:
    chosen = (rows.get("tts-provider") or "").lower() or None
    url = rows.get("tts-url")
    key = rows.get("tts-key")
    model = rows.get("tts-model")
    voice = rows.get("tts-voice")
    if chosen is None and url is None and key is None:
        return _from_environment(environ, timeout, model=model, voice=voice)
    if chosen is None:
        chosen = "openai" if _host(url or OPENAI_BASE_URL) == "api.openai.com" else "compatible"
    if chosen not in _KNOWN:
        raise SpeechNotConfigured(
            f"tts-provider {chosen!r} is not supported (use one of {', '.join(_KNOWN)})"
        )
    own_url = url is not None
    url = url or (OPENAI_BASE_URL if chosen == "openai" else "")
    if not url:
        raise SpeechNotConfigured("tts-provider compatible needs a tts-url")
    key = endpoint_key(
        key,
        provider=chosen,
        url=url,
        own_url=own_url,
        env_key="OPENAI_API_KEY",
        environ=environ,
        row="tts-key",
    )
    name = chosen if chosen == "openai" else (_host(url) or "compatible")
    return OpenAISpeaker(
        api_key=key,
        model=model or DEFAULT_MODEL,
        voice=voice or DEFAULT_VOICE,
        base_url=sdk_base_url(url),
        name=name,
        timeout=timeout,
    )


def _from_environment(
    environ: Mapping[str, str], timeout: float, *, model: str | None, voice: str | None
) -> TextToSpeech | None:
    model = model or environ.get("TTS_MODEL", "").strip() or DEFAULT_MODEL
    voice = voice or environ.get("TTS_VOICE", "").strip() or DEFAULT_VOICE
    url = environ.get("TTS_URL", "").strip()
    if url:
        key = environ.get("TTS_KEY", "").strip() or "no-key"
        name = _host(url) or "tts"
        base_url = sdk_base_url(url)
    elif environ.get("OPENAI_API_KEY", "").strip():
        key, name, base_url = environ["OPENAI_API_KEY"].strip(), "openai", OPENAI_BASE_URL
    else:
        return None
    return OpenAISpeaker(
        api_key=key, model=model, voice=voice, base_url=base_url, name=name, timeout=timeout
    )


def sdk_base_url(url: str) -> str:
    """The SDK's base URL from one that may name the whole endpoint (``…/v1``,
    ``…/v1/audio/speech`` and a bare host alike)."""
    return speech_base_url(url, "/audio/speech")


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""
