"""A fake OpenAI speech-to-text server on 127.0.0.1, in the real wire format.

``POST /v1/audio/transcriptions`` takes OpenAI's multipart form (``file``, ``model``, and
``language``, ``prompt``, ``response_format``, ``temperature`` when given) and answers
``{"text": …}`` for ``json``, the bare text for ``text``, and ``verbose_json``'s object
with ``language`` and ``duration``. Like OpenAI, it checks the file is audio (with
ffprobe, in a subprocess: the server shares the test's event loop) and refuses anything
else with a 400 ``Invalid file format.``; a wrong bearer token gets 401.

What it hears is scripted: a test queues texts, or a :class:`~tests.llm.scripted.Fail`
(an error in OpenAI's format) or :class:`~tests.llm.scripted.Hang`; with nothing queued it
answers ``default``. Each request is kept in :attr:`FakeSpeechToText.calls`.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass, field

from aiohttp import web

from tests.llm.scripted import Fail, Hang

API_KEY = "sk-stt-test-0123456789"


@dataclass
class Transcription:
    """One request as the server got it, and what ffprobe found in its file."""

    model: str
    filename: str
    content_type: str
    data: bytes
    fields: dict[str, str]
    format_name: str = ""
    seconds: float = 0.0


@dataclass
class FakeSpeechToText:
    api_key: str = API_KEY
    default: str = ""
    calls: list[Transcription] = field(default_factory=list)
    url: str = ""
    _script: list[str | Fail | Hang] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *outcomes: str | Fail | Hang) -> None:
        self._script.extend(outcomes)

    def reset(self, default: str = "") -> None:
        """Forget the requests and the script (a server shared by a module's tests)."""
        self.calls.clear()
        self._script.clear()
        self.default = default

    async def start(self) -> str:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _transcribe(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _error(400, "Missing file.", None)
        data = upload.file.read()
        fields = {k: str(v) for k, v in form.items() if k != "file"}
        call = Transcription(
            model=fields.get("model", ""),
            filename=upload.filename,
            content_type=upload.content_type,
            data=data,
            fields=fields,
        )
        self.calls.append(call)
        if not call.model:
            return _error(400, "you must provide a model parameter", None)
        outcome = self._script.pop(0) if self._script else self.default
        if isinstance(outcome, Hang):
            await asyncio.sleep(outcome.seconds)
        if isinstance(outcome, Fail):
            return _error(outcome.status, outcome.message, None, outcome.headers)
        probed = await _probe(data)
        if probed is None:
            return _error(
                400,
                "Invalid file format. Supported formats: flac, m4a, mp3, "
                "mp4, mpeg, mpga, oga, ogg, wav, webm",
                None,
            )
        call.format_name, call.seconds = probed
        text = str(outcome)
        response_format = fields.get("response_format", "json")
        if response_format == "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        body: dict[str, object] = {"text": text}
        if response_format == "verbose_json":
            body |= {"language": fields.get("language", "english"), "duration": call.seconds}
        else:
            body["usage"] = {"type": "duration", "seconds": max(1, round(call.seconds))}
        return web.json_response(body)


async def _probe(data: bytes) -> tuple[str, float] | None:
    """ffprobe's format name and duration of ``data``, ``None`` when it is not audio."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        process = await asyncio.create_subprocess_exec(
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            f.name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await process.communicate()
    if process.returncode != 0:
        return None
    info = json.loads(out or b"{}")
    if not any(s.get("codec_type") == "audio" for s in info.get("streams", [])):
        return None
    fmt = info.get("format", {})
    return str(fmt.get("format_name", "")), float(fmt.get("duration") or 0.0)


def _error(
    status: int, message: str, code: str | None, headers: dict[str, str] | None = None
) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)
