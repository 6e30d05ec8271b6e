"""The WebSocket route of the web channel: JSON frames, or HTML fragments for the widget.

Client frames: ``{"type": "message", "text", "user_id"?, "session_id"?}``.
Server frames: ``delta``, ``message``, ``done`` (with the session id) and
``error``; with ``?format=html`` each is sent rendered for htmx's ws extension,
and the user's own message is echoed as a ``user`` frame.
"""

from __future__ import annotations

import logging

from aiohttp import WSCloseCode, WSMsgType, web

from channels import web as web_channel
from channels.base import OutboundMessage, PayloadError, Suggestion
from gateway.keys import BOTS, MESSAGE_PATH, SETTINGS, STORES, WEBSOCKETS
from gateway.sinks import WebSocketSink, reply_frame
from gateway.widget import render_frame
from pipeline.errors import TurnFailed, TurnRejected, UnknownBot
from pipeline.message_path import MessageFailed, MessageQueued
from storage.base import StorageError

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

REPLAY_LIMIT = 50


@routes.get("/ws/{bot}")
async def websocket(request: web.Request) -> web.StreamResponse:
    bot = request.match_info["bot"]
    if request.app[BOTS].get(bot) is None:
        raise UnknownBot(bot)
    html = request.query.get("format", "json") == "html"
    user_id = request.query.get("user_id") or None
    session_id = request.query.get("session_id") or None

    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=request.app[SETTINGS].max_body_bytes)
    await ws.prepare(request)
    sockets = request.app[WEBSOCKETS]
    sockets.add(ws)
    try:
        sink = WebSocketSink(ws, render_frame if html else None)
        if session_id is not None:
            session_id = await _resume(request, sink, bot, user_id, session_id, replay=html)
        await _converse(request, ws, sink, bot, user_id, session_id, html=html)
    finally:
        sockets.discard(ws)
    return ws


async def _converse(
    request: web.Request,
    ws: web.WebSocketResponse,
    sink: WebSocketSink,
    bot: str,
    user_id: str | None,
    session_id: str | None,
    *,
    html: bool,
) -> None:
    """Run a turn for each message frame until the client goes away."""
    async for frame in ws:
        if frame.type != WSMsgType.TEXT:
            if frame.type == WSMsgType.BINARY:
                await _error(sink, "bad_frame", "frames must be JSON text")
            continue
        try:
            data = web_channel.decode_json_object(frame.data)
            kind = data.get("type", "message")
            if kind != "message":
                raise PayloadError(f"unknown frame type {kind!r}")
            message = web_channel.parse_message(bot, data, user_id=user_id, session_id=session_id)
        except PayloadError as e:
            log.info("bad websocket frame bot=%s: %s", bot, e)
            await _error(sink, "bad_request", str(e))
            continue
        if html:
            await sink.send({"type": "user", "text": message.text})
        try:
            result = await request.app[MESSAGE_PATH].run_inline(message, sink)
        except TurnRejected as e:
            log.info("refused websocket message bot=%s: %s", bot, e.message)
            await _error(sink, e.code, e.message)
            if e.code == "unknown_session":
                session_id = None  # the next message starts or finds the user's session
            continue
        except (TurnFailed, MessageQueued, MessageFailed, StorageError) as e:
            await _error(sink, "turn_failed", f"{e}; it is logged and will be retried")
            continue
        if result.recorded:
            for reply in result.replies:
                await sink.message(reply)
        user_id, session_id = message.conversation, result.session_id
        await sink.send({"type": "done", "session_id": session_id})


def setup_websockets(app: web.Application) -> None:
    """Add the route, and close open sockets on shutdown ("going away": clients reconnect)."""
    app[WEBSOCKETS] = set()
    app.add_routes(routes)
    app.on_shutdown.append(_close_all)


async def _close_all(app: web.Application) -> None:
    sockets = app[WEBSOCKETS]
    for ws in tuple(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def _resume(
    request: web.Request,
    sink: WebSocketSink,
    bot: str,
    user_id: str | None,
    session_id: str,
    *,
    replay: bool,
) -> str | None:
    """Check a session named on connect; replay its recent history to the widget."""
    store = request.app[STORES].conversations
    session = await store.get(session_id)
    if session is None or user_id is None or (session.bot_id, session.user_id) != (bot, user_id):
        await _error(sink, "unknown_session", f"no session {session_id!r} for this user and bot")
        return None
    if replay:
        entries = await store.history(session_id, limit=REPLAY_LIMIT)
        suggestions = tuple(
            Suggestion(k, label) for k, label in session.state.get("suggestions", [])
        )
        for index, entry in enumerate(entries):
            if entry.role == "user":
                await sink.send({"type": "user", "text": entry.content})
            else:
                last = index == len(entries) - 1
                out = OutboundMessage(
                    channel=web_channel.NAME,
                    bot=bot,
                    conversation=user_id,
                    text=entry.content,
                    suggestions=suggestions if last else (),
                )
                await sink.send(reply_frame(out))
        await sink.send({"type": "done", "session_id": session.id})
    return session.id


async def _error(sink: WebSocketSink, code: str, message: str) -> None:
    await sink.send({"type": "error", "error": code, "message": message})
