"""The WebSocket route of the web channel: JSON frames, or HTML fragments for the widget.

Credentials never travel in the URL. The client's first frame is
``{"type": "auth", "token", "session_id"?, "user_id"?}`` (within 10 s; the
token may be left out when the upgrade request carried ``Authorization:
Bearer …``); the server answers ``{"type": "ready", "user_id"}``, then,
with a ``session_id``, resumes that session if it is the caller's. A missing
or refused credential gets an ``unauthorized`` error frame and the socket is
closed (1008). Then client frames: ``{"type": "message", "text",
"session_id"?}``, and ``"user_id"`` from an ``app`` only (a user is its
credential's). Server frames: ``delta``, ``message``, ``done`` (with the
session id) and ``error``; with ``?format=html`` each is sent rendered for
htmx's ws extension, and the user's own message is echoed as a ``user`` frame.
A ``message`` may also come between turns: an agent's (``"from": "agent"``) while
a person has the conversation, or the bot's when a handoff timed out; it reaches
every socket the user has open with the bot, on whichever instance.

The upgrade takes from its address's rate-limit bucket, and so does each message frame,
from its credential's too (``gateway.rate_limits``): a frame over a limit gets an
``error`` frame ``rate_limited`` with ``retry_after`` (seconds), is not run, and the
socket stays open.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from channels import web as web_channel
from channels.base import Attachment, MediaKind, OutboundMessage, PayloadError, Suggestion
from gateway.auth import (
    AuthRefused,
    Principal,
    caller,
    check_bot,
    limit_credential,
    message_user,
    without_user_id,
)
from gateway.keys import BOTS, LIVE, MEDIA_URLS, MESSAGE_PATH, SETTINGS, STORES, WEBSOCKETS
from gateway.live import Follower, user_key
from gateway.rate_limits import RATE_LIMITER, RateLimited
from gateway.sinks import WebSocketSink, reply_frame
from gateway.widget import render_frame
from gateway.ws_auth import read_auth_frame
from pipeline.errors import TurnFailed, TurnRejected, UnknownBot
from pipeline.handoff import AGENT_ROLE
from pipeline.message_path import MessageFailed, MessageQueued
from storage.base import HistoryAttachment, StorageError

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

REPLAY_LIMIT = 50
_NOT_IN_URL = ("user_id", "session_id", "token", "visitor_token")


@routes.get("/ws/{bot}")
async def websocket(request: web.Request) -> web.StreamResponse:
    bot = request.match_info["bot"]
    if request.app[BOTS].get(bot) is None:
        raise UnknownBot(bot)
    for name in _NOT_IN_URL:
        if name in request.query:
            raise web.HTTPBadRequest(
                text=f"{name!r} does not go in the URL: send it in the first frame,"
                ' {"type": "auth", "token": …, "session_id": …}'
            )
    html = request.query.get("format", "json") == "html"
    header = await caller(request)  # a bad Authorization header is a 401 before the upgrade
    if header is not None:
        check_bot(header, bot)

    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=request.app[SETTINGS].max_body_bytes)
    await ws.prepare(request)
    sockets = request.app[WEBSOCKETS]
    sockets.add(ws)
    try:
        sink = WebSocketSink(ws, render_frame if html else None)
        hello = await _hello(request, ws, sink, bot, header)
        if hello is None:
            return ws
        principal, user_id, session_id = hello
        await sink.send({"type": "ready", "user_id": user_id})
        # What reaches the user without a turn of theirs (an agent's message), from any
        # instance: pushed to every socket the user has open with this bot.
        pushes = Follower(request.app[LIVE].users, lambda event: sink.send(event["frame"]))
        try:
            pushes.follow(_push_key(bot, user_id))
            if session_id is not None:
                session_id, user_id = await _resume(
                    request, sink, bot, user_id, session_id, replay=html
                )
                pushes.follow(_push_key(bot, user_id))
            await _converse(
                request, ws, sink, bot, principal, user_id, session_id, html=html, pushes=pushes
            )
        finally:
            await pushes.close()
    finally:
        sockets.discard(ws)
    return ws


def _push_key(bot: str, user_id: str | None) -> tuple[str, str, str] | None:
    return user_key(bot, web_channel.NAME, user_id) if user_id is not None else None


async def _hello(
    request: web.Request,
    ws: web.WebSocketResponse,
    sink: WebSocketSink,
    bot: str,
    header: Principal | None,
) -> tuple[Principal, str | None, str | None] | None:
    """Read the auth frame: the caller, its user and the session to resume; None: refused."""
    try:
        hello = await read_auth_frame(request, ws, bot, header)
        if hello is None:
            return None
        principal, data = hello
        user_id = message_user(principal)
        session_id = _optional_string(data, "session_id", 64)
        if user_id is None:  # an app names its user, here or in each message
            user_id = _optional_string(data, "user_id", web_channel.MAX_USER_ID)
    except AuthRefused as e:
        log.info("refused websocket bot=%s: %s", bot, e.message)
        await _error(sink, e.code, e.message)
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=e.code.encode())
        return None
    except PayloadError as e:
        await _error(sink, "bad_request", str(e))
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"bad_request")
        return None
    return principal, user_id, session_id


def _optional_string(data: dict[str, Any], name: str, max_length: int) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise PayloadError(f"field {name!r} must be a string of at most {max_length} characters")
    return value


async def _converse(
    request: web.Request,
    ws: web.WebSocketResponse,
    sink: WebSocketSink,
    bot: str,
    principal: Principal,
    user_id: str | None,
    session_id: str | None,
    *,
    html: bool,
    pushes: Follower,
) -> None:
    """Run a turn for each message frame until the client goes away."""
    names_user = principal.acts_for_users
    limiter = request.app[RATE_LIMITER]
    async for frame in ws:
        if frame.type != WSMsgType.TEXT:
            if frame.type == WSMsgType.BINARY:
                await _error(sink, "bad_frame", "frames must be JSON text")
            continue
        try:
            # Each frame counts as a request of the address and of the credential.
            await limiter.check_address(request)
            await limit_credential(request, principal)
        except RateLimited as e:
            await sink.send(
                {
                    "type": "error",
                    "error": "rate_limited",
                    "message": e.message,
                    "retry_after": e.retry_after,
                }
            )
            continue
        try:
            data = web_channel.decode_json_object(frame.data)
            kind = data.get("type", "message")
            if kind != "message":
                raise PayloadError(f"unknown frame type {kind!r}")
            if not names_user:
                data = without_user_id(data)  # a user is its credential's, never the frame's
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
        pushes.follow(_push_key(bot, user_id))
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
) -> tuple[str | None, str | None]:
    """Check a session named on connect (the caller's own, or for an app any of its bot's);
    replay its recent history to the widget. The session and user to go on with."""
    store = request.app[STORES].conversations
    session = await store.get(session_id)
    if (
        session is None
        or session.bot_id != bot
        or (user_id is not None and session.user_id != user_id)
    ):
        await _error(sink, "unknown_session", f"no session {session_id!r} for this user and bot")
        return None, user_id
    user_id = session.user_id
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
                    attachments=await _files_of(request, entry.attachments),
                )
                frame = reply_frame(out)
                if entry.role == AGENT_ROLE:  # a person's message, in a handoff
                    frame["from"] = "agent"
                await sink.send(frame)
        await sink.send({"type": "done", "session_id": session.id})
    return session.id, user_id


_KINDS = frozenset(kind.value for kind in MediaKind)


async def _files_of(
    request: web.Request, notes: tuple[HistoryAttachment, ...]
) -> tuple[Attachment, ...]:
    """The files a bot's history row sent (SEND FILE TO), with fresh links, for a replay."""
    urls = request.app[MEDIA_URLS]
    files = [
        Attachment(
            kind=MediaKind(note.kind),
            content_type=note.content_type,
            filename=note.filename,
            size=note.size,
            key=note.key,
            url=await urls.url(note.key, filename=note.filename, content_type=note.content_type),
        )
        for note in notes
        if note.key is not None and note.kind in _KINDS
    ]
    return tuple(files)


async def _error(sink: WebSocketSink, code: str, message: str) -> None:
    await sink.send({"type": "error", "error": code, "message": message})
