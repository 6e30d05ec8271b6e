"""Speech to text: the contract, and OpenAI's ``audio/transcriptions`` through its SDK.

One small contract, :class:`SpeechToText`: audio in (made ready by
:mod:`pipeline.audio_decode`), its words out. :class:`OpenAITranscriber` speaks OpenAI's
wire format (a multipart form with the file and the model, JSON back), which Whisper
servers (faster-whisper-server, whisper.cpp's server, LocalAI) and Groq speak too, at
their own base URL.

Failures come back as one family, mapped in one place (:meth:`OpenAITranscriber._error`):
:class:`SpeechUnavailable` (5xx, 429, a timeout, no connection: worth running the turn
again later) and :class:`SpeechRefused` (any other 4xx: the same audio would be refused
again, so the user is told).
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import httpx2
import openai

from pipeline.audio_decode import OPENAI_FORMATS, SpeechAudio
from pipeline.llm.openai_provider import openai_client

# What an SDK call raises: the SDK's errors, the transport's, a malformed answer.
CALL_ERRORS = (openai.OpenAIError, httpx2.HTTPError, ValueError)


class SpeechError(Exception):
    """Root of the speech-to-text errors; ``provider`` and ``status`` are for the log."""

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.provider}: {self.message}{status}"


class SpeechUnavailable(SpeechError):
    """The provider failed or could not be reached: the turn is run again later."""


class SpeechRefused(SpeechError):
    """The provider refused this audio or this request (a 4xx other than 429)."""


class SpeechToText(Protocol):
    """A speech-to-text engine. ``accepted`` are the containers (ffprobe's format names)
    it takes as they are; anything else reaches it as 16 kHz mono WAV."""

    @property
    def name(self) -> str: ...

    @property
    def accepted(self) -> frozenset[str]: ...

    async def transcribe(self, audio: SpeechAudio, *, language: str | None = None) -> str:
        """The words spoken in ``audio`` (empty when none were heard).

        Raises :class:`SpeechUnavailable` or :class:`SpeechRefused`.
        """

    async def aclose(self) -> None:
        """Release the engine's clients."""


class OpenAITranscriber:
    """``POST {base_url}/audio/transcriptions`` with the ``openai`` SDK."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str,
        name: str = "openai",
        timeout: float = 60.0,
    ) -> None:
        self._name = name
        self.model = model
        self.base_url = base_url
        # No retries inside the call: a failed turn is run again later by the inbox, with
        # the audio kept and the earlier work reused.
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout=timeout)

    @property
    def name(self) -> str:
        return self._name

    @property
    def accepted(self) -> frozenset[str]:
        return OPENAI_FORMATS

    async def transcribe(self, audio: SpeechAudio, *, language: str | None = None) -> str:
        arguments: dict[str, Any] = {
            "model": self.model,
            "file": (audio.filename, audio.data, audio.content_type),
            "response_format": "json",
        }
        if language:
            arguments["language"] = language
        create = cast(Any, self._client.audio.transcriptions.create)
        try:
            result = await create(**arguments)
        except CALL_ERRORS as e:
            raise self._error(e) from e
        text = result if isinstance(result, str) else getattr(result, "text", None)
        if not isinstance(text, str):
            raise SpeechUnavailable("the answer has no text", provider=self._name)
        return text.strip()

    def _error(self, error: Exception) -> SpeechError:
        return sdk_error(error, self._name, SpeechUnavailable, SpeechRefused)

    async def aclose(self) -> None:
        await self._client.close()


def sdk_error(
    error: Exception,
    provider: str,
    unavailable: type[SpeechError],
    refused: type[SpeechError],
) -> SpeechError:
    """The one place an SDK or transport failure of a speech endpoint (to text or from it)
    becomes one of ours: ``unavailable`` for 5xx, 429 and the transport, ``refused`` for
    any other 4xx."""
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        kind = unavailable if status >= 500 or status == 429 else refused
        return kind(error.message, provider=provider, status=status)
    if isinstance(error, openai.APITimeoutError):
        return unavailable("timed out", provider=provider)
    if isinstance(error, openai.APIConnectionError):
        return unavailable(f"cannot connect: {error.message}", provider=provider)
    if isinstance(error, httpx2.HTTPError):
        return unavailable(f"transport error: {error}", provider=provider)
    return unavailable(f"malformed response: {error!r}", provider=provider)
