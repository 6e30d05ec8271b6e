"""What a fake model server answers, scripted per request, and the server both fakes share.

A test queues outcomes (:meth:`ScriptedServer.script`): an :class:`Answer` (text in the
pieces a stream sends, ``spacing`` seconds apart, tool calls, reasoning, usage), a
:class:`Fail` (an HTTP error in the provider's own error format, with headers such as
Retry-After), a :class:`Hang` (never answers), a :class:`Cut` (a stream that stops
part-way, cleanly or by dropping the connection) or :class:`Garbage` (a stream event that
is not JSON). Each request is kept in :attr:`ScriptedServer.calls` with its headers, body
and arrival time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    arguments: dict[str, Any]
    pieces: int = 3  # the stream sends the argument JSON in this many parts


@dataclass(frozen=True)
class Answer:
    text: tuple[str, ...] = ()
    tool_calls: tuple[ToolUse, ...] = ()
    thinking: str = ""  # a thinking block (Anthropic) before the text
    input_tokens: int = 11
    output_tokens: int = 7
    cached_tokens: int = 0
    finish: str | None = None  # the provider's own finish reason, when not derived
    model: str = ""
    spacing: float = 0.0  # seconds between the stream's events: a model writing slowly


@dataclass(frozen=True)
class Fail:
    status: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    seconds: float = 30.0


@dataclass(frozen=True)
class Cut:
    """Send ``answer``'s stream events up to ``after`` of them, then stop.

    ``drop`` closes the connection mid-body (a broken transfer); without it the body
    ends cleanly but the answer never finishes.
    """

    answer: Answer
    after: int
    drop: bool = False


@dataclass(frozen=True)
class Garbage:
    """A stream whose first event carries this data, which is not JSON."""

    data: str = "{not json"


Outcome = Answer | Fail | Hang | Cut | Garbage


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


def split(text: str, pieces: int) -> list[str]:
    """``text`` in ``pieces`` nearly equal parts (for streamed tool arguments)."""
    pieces = max(1, min(pieces, len(text)))
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class ScriptedServer:
    """An aiohttp server on 127.0.0.1 whose answers come from a script."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.calls: list[Call] = []
        self._script: list[Outcome] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def script(self, *outcomes: Outcome) -> None:
        self._script.extend(outcomes)

    def routes(self) -> dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]:
        raise NotImplementedError

    async def start(self) -> str:
        app = web.Application()
        for path, handler in self.routes().items():
            app.router.add_post(path, handler)
        # A handler that hangs for a deadline test must not hold the shutdown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def record(self, request: web.Request) -> Call:
        call = Call(
            path=request.path,
            headers=dict(request.headers),
            body=await request.json(),
            at=time.monotonic(),
        )
        self.calls.append(call)
        return call

    def next_outcome(self) -> Outcome:
        if not self._script:
            raise AssertionError("the fake server got a request the test did not script")
        return self._script.pop(0)

    async def hang(self, outcome: Hang) -> None:
        await asyncio.sleep(outcome.seconds)

    async def send_events(
        self, request: web.Request, events: list[bytes], outcome: Outcome
    ) -> web.StreamResponse:
        """Stream ``events`` as ``text/event-stream``, cut short as ``outcome`` says."""
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        count = outcome.after if isinstance(outcome, Cut) else len(events)
        answer = outcome.answer if isinstance(outcome, Cut) else outcome
        spacing = answer.spacing if isinstance(answer, Answer) else 0.0
        for index, event in enumerate(events[:count]):
            if index and spacing:
                await asyncio.sleep(spacing)
            await response.write(event)
            if not spacing:
                await asyncio.sleep(0)
        if isinstance(outcome, Cut) and outcome.drop:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response
