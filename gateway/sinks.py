"""Reply sinks of the web channel: a JSON body, a server-sent event stream, a WebSocket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from channels.base import OutboundMessage
from pipeline.message_codec import player_to_json


def reply_json(message: OutboundMessage) -> dict[str, Any]:
    """A reply as the REST API shows it: suggestion labels, which a client may send back,
    and the files it carries (``SEND FILE TO``, ``PLAY``), each with a link that expires,
    and the player that shows it (``PLAY``) or that is closed (``STOP``)."""
    data: dict[str, Any] = {
        "text": message.text,
        "suggestions": [s.label for s in message.suggestions],
    }
    if message.attachments:
        data["attachments"] = files_json(message)
    if message.player is not None:
        data["player"] = player_to_json(message.player)
    return data


def reply_frame(message: OutboundMessage) -> dict[str, Any]:
    """A reply as a WebSocket frame: suggestions keep both key and label."""
    frame: dict[str, Any] = {
        "type": "message",
        "text": message.text,
        "suggestions": [{"key": s.key, "label": s.label} for s in message.suggestions],
    }
    if message.attachments:
        frame["attachments"] = files_json(message)
    if message.player is not None:
        frame["player"] = player_to_json(message.player)
    return frame


def files_json(message: OutboundMessage) -> list[dict[str, Any]]:
    """The files of a bot's reply as the web channel shows them."""
    return [
        {
            "kind": a.kind.value,
            "url": a.url,
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
        }
        for a in message.attachments
        if a.url is not None
    ]


class CollectingSink:
    """Keeps the turn's replies for one JSON response."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []

    async def delta(self, text: str) -> None:
        return None  # the complete message follows; a JSON body carries only that

    async def message(self, message: OutboundMessage) -> None:
        self.replies.append(reply_json(message))


class EventStreamSink(CollectingSink):
    """Streams the turn as server-sent events; the response starts with the first event,
    or when the model starts to answer (:meth:`begin`), whichever comes first.

    Starting lazily lets a turn refused before any output still answer with a
    plain 4xx JSON error.
    """

    def __init__(self, request: web.Request) -> None:
        super().__init__()
        self._request = request
        self.response: web.StreamResponse | None = None

    async def _start(self) -> web.StreamResponse:
        if self.response is None:
            self.response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await self.response.prepare(self._request)
        return self.response

    async def send(self, event: str, data: dict[str, Any]) -> None:
        response = await self._start()
        await response.write(
            b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        )

    async def begin(self) -> None:
        # The model is being asked: the turn was not refused, and the head goes out now
        # rather than with the first delta, which then leaves as soon as it is written.
        await self._start()

    async def end(self) -> None:
        return None

    async def delta(self, text: str) -> None:
        await self.send("delta", {"text": text})

    async def message(self, message: OutboundMessage) -> None:
        await super().message(message)
        await self.send("message", reply_json(message))


class WebSocketSink:
    """Sends the turn's output as JSON frames, or rendered fragments for the HTML widget."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        render: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        self._ws = ws
        self._render = render

    async def send(self, frame: dict[str, Any]) -> None:
        if self._ws.closed:
            return
        if self._render is None:
            await self._ws.send_str(orjson.dumps(frame).decode())
            return
        html = self._render(frame)
        if html is not None:
            await self._ws.send_str(html)

    async def delta(self, text: str) -> None:
        await self.send({"type": "delta", "text": text})

    async def message(self, message: OutboundMessage) -> None:
        await self.send(reply_frame(message))
