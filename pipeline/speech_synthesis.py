"""Text to speech: the contract, and OpenAI's ``audio/speech`` through its SDK.

One small contract, :class:`TextToSpeech`: words in, an OGG/Opus voice note out (what
Telegram's sendVoice and WhatsApp's voice messages take). :class:`OpenAISpeaker` speaks
OpenAI's wire format (``POST {base_url}/audio/speech`` with ``model``, ``voice``,
``input`` and ``response_format: opus``; the audio's bytes back), which compatible servers
(LocalAI, Kokoro-FastAPI, openedai-speech, Speaches) speak too, at their own base URL.

Failures come back as one family, mapped in one place (:meth:`OpenAISpeaker._error`):
:class:`SynthesisUnavailable` (5xx, 429, a timeout, no connection) and
:class:`SynthesisRefused` (any other 4xx, or an answer that is not OGG/Opus). Either way
the caller sends the text alone: a voice reply is an extra, never worth the turn.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from pipeline.llm.openai_provider import openai_client
from pipeline.speech import CALL_ERRORS, SpeechError, sdk_error

OGG_MAGIC = b"OggS"
VOICE_CONTENT_TYPE = "audio/ogg"
MAX_VOICE_BYTES = 16 * 1024 * 1024  # WhatsApp's limit for audio, the smallest of ours


class SynthesisError(SpeechError):
    """Root of the text-to-speech errors; ``provider`` and ``status`` are for the log."""


class SynthesisUnavailable(SynthesisError):
    """The provider failed or could not be reached."""


class SynthesisRefused(SynthesisError):
    """The provider refused this request (a 4xx other than 429), or answered with
    something that is not an OGG/Opus file."""


class TextToSpeech(Protocol):
    """A text-to-speech engine giving OGG/Opus voice notes."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def voice(self) -> str: ...

    async def synthesize(self, text: str) -> bytes:
        """``text`` spoken, as an OGG/Opus file.

        Raises :class:`SynthesisUnavailable` or :class:`SynthesisRefused`.
        """

    async def aclose(self) -> None:
        """Release the engine's clients."""


class OpenAISpeaker:
    """``POST {base_url}/audio/speech`` with the ``openai`` SDK, asking for Opus."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        voice: str,
        base_url: str,
        name: str = "openai",
        timeout: float = 30.0,
    ) -> None:
        self._name = name
        self._model = model
        self._voice = voice
        self.base_url = base_url
        # No retries: the turn waits on this call, and its text goes alone when the voice
        # does not come.
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout=timeout)

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._model

    @property
    def voice(self) -> str:
        return self._voice

    async def synthesize(self, text: str) -> bytes:
        create = cast(Any, self._client.audio.speech.create)
        try:
            result = await create(
                model=self._model, voice=self._voice, input=text, response_format="opus"
            )
            data = result.content
        except CALL_ERRORS as e:
            raise self._error(e) from e
        if not isinstance(data, bytes) or not data.startswith(OGG_MAGIC):
            head = data[:16] if isinstance(data, bytes) else type(data).__name__
            raise SynthesisRefused(f"the answer is not an OGG file: {head!r}", provider=self._name)
        if len(data) > MAX_VOICE_BYTES:
            raise SynthesisRefused(
                f"the voice note is {len(data)} bytes, over {MAX_VOICE_BYTES}",
                provider=self._name,
            )
        return data

    def _error(self, error: Exception) -> SynthesisError:
        return cast(
            SynthesisError, sdk_error(error, self._name, SynthesisUnavailable, SynthesisRefused)
        )

    async def aclose(self) -> None:
        await self._client.close()
