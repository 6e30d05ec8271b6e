"""A fake OpenAI text-to-speech server on 127.0.0.1, in the real wire format.

``POST /v1/audio/speech`` takes OpenAI's JSON body (``model``, ``input``, ``voice``, and
``response_format``, ``speed``, ``instructions`` when given) and answers the audio's bytes:
for ``opus`` an OGG/Opus file of the input really spoken (espeak-ng, then ffmpeg's
libopus, in a thread: the server shares the test's event loop), for anything else what
the test set in :attr:`FakeTextToSpeech.other`. Like OpenAI, it refuses a missing model,
voice or input, and an input over 4096 characters, with a 400 in its error format; a
wrong bearer token gets 401.

A test queues outcomes: :class:`~tests.llm.scripted.Fail` (an error in OpenAI's format),
:class:`~tests.llm.scripted.Hang`, or bytes to answer instead of the spoken input; with
nothing queued it speaks. Each request is kept in :attr:`FakeTextToSpeech.calls`, and
each answer it spoke in :attr:`FakeTextToSpeech.spoken`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.llm.scripted import Fail, Hang
from tests.voice.speech_samples import speak

API_KEY = "sk-tts-test-0123456789"
MAX_INPUT = 4096
CONTENT_TYPES = {"opus": "audio/ogg", "mp3": "audio/mpeg", "wav": "audio/wav"}


@dataclass
class SpeechRequest:
    """One request as the server got it."""

    body: dict[str, Any]
    authorization: str | None

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def voice(self) -> str:
        return str(self.body.get("voice", ""))

    @property
    def input(self) -> str:
        return str(self.body.get("input", ""))

    @property
    def response_format(self) -> str:
        return str(self.body.get("response_format", "mp3"))


@dataclass
class FakeTextToSpeech:
    api_key: str = API_KEY
    calls: list[SpeechRequest] = field(default_factory=list)
    spoken: list[bytes] = field(default_factory=list)
    other: bytes = b"ID3\x04" + b"\x00" * 64  # what a format other than opus gets
    url: str = ""
    _script: list[bytes | Fail | Hang] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *outcomes: bytes | Fail | Hang) -> None:
        self._script.extend(outcomes)

    def reset(self) -> None:
        """Forget the requests and the script (a server shared by a module's tests)."""
        self.calls.clear()
        self.spoken.clear()
        self._script.clear()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/audio/speech", self._speech)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", None)
        call = SpeechRequest(body=body, authorization=authorization)
        self.calls.append(call)
        if authorization != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        for name in ("model", "voice", "input"):
            if not body.get(name):
                return _error(400, f"you must provide a {name} parameter", None)
        if len(call.input) > MAX_INPUT:
            return _error(400, f"string too long: input is at most {MAX_INPUT} characters", None)
        outcome = self._script.pop(0) if self._script else None
        if isinstance(outcome, Hang):
            await asyncio.sleep(outcome.seconds)
        if isinstance(outcome, Fail):
            return _error(outcome.status, outcome.message, None, outcome.headers)
        fmt = call.response_format
        if isinstance(outcome, bytes):
            data = outcome
        elif fmt == "opus":
            data = await asyncio.to_thread(speak, call.input, "ogg")
            self.spoken.append(data)
        else:
            data = self.other
        return web.Response(body=data, content_type=CONTENT_TYPES.get(fmt, "audio/mpeg"))


def _error(
    status: int, message: str, code: str | None, headers: dict[str, str] | None = None
) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)
