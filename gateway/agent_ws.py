"""The agents' live feed: ``GET /agent-ws/{bot}``, a WebSocket of JSON frames.

As on the web channel's socket, the credential is the first frame, never the URL:
``{"type": "auth", "token"}`` within 10 s (``token`` may be left out when the upgrade
carried ``Authorization: Bearer …``), from an ``agent`` or ``admin`` of the bot; anything
else gets an ``unauthorized`` or ``forbidden`` error frame and the socket is closed (1008).
The server answers ``{"type": "ready", "agent"}``, then ``{"type": "queue", "handoffs"}``
(the conversations waiting and held, as ``GET /api/v1/bots/{bot}/handoffs`` lists them),
then, as they happen on any instance:

- ``{"type": "handoff", "action", "handoff"}``: a conversation ``transferred``, ``taken``,
  ``released`` or ``abandoned`` (returned by the queue timeout);
- ``{"type": "message", "session_id", "role", "text", "at", "agent"?}``: a message in a
  conversation with a person: the user's, an agent's, or the bot's timeout notice.

A client frame ``{"type": "queue"}`` asks for the queue again (after a lost frame, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from channels import web as web_channel
from channels.base import PayloadError
from gateway.auth import AuthRefused, Forbidden, Principal, caller, check_bot
from gateway.handoff_api import as_agent
from gateway.keys import BOTS, HANDOFFS, LIVE, SETTINGS, WEBSOCKETS
from gateway.live import Mailbox
from gateway.sinks import WebSocketSink
from gateway.ws_auth import read_auth_frame
from pipeline.errors import UnknownBot
from pipeline.handoff import handoff_view
from storage.base import StorageError

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

_NOT_IN_URL = ("token", "access_token", "key")


@routes.get("/agent-ws/{bot}")
async def agent_socket(request: web.Request) -> web.StreamResponse:
    bot = request.match_info["bot"]
    if request.app[BOTS].get(bot) is None:
        raise UnknownBot(bot)
    for name in _NOT_IN_URL:
        if name in request.query:
            raise web.HTTPBadRequest(
                text=f"{name!r} does not go in the URL: send it in the first frame,"
                ' {"type": "auth", "token": …}'
            )
    header = await caller(request)
    if header is not None:
        check_bot(header, bot)

    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=request.app[SETTINGS].max_body_bytes)
    await ws.prepare(request)
    sockets = request.app[WEBSOCKETS]
    sockets.add(ws)
    sink = WebSocketSink(ws)
    try:
        principal = await _hello(request, ws, sink, bot, header)
        if principal is None:
            return ws
        agent = as_agent(principal)
        await sink.send({"type": "ready", "agent": {"id": agent.id, "name": agent.name}})
        # Listening before the queue is read: nothing that happens meanwhile is missed.
        with request.app[LIVE].agents.listen(bot) as mailbox:
            pump = asyncio.get_running_loop().create_task(_pump(mailbox, sink))
            try:
                await _queue(request, sink, bot)
                await _serve(request, ws, sink, bot)
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
    finally:
        sockets.discard(ws)
    return ws


async def _hello(
    request: web.Request,
    ws: web.WebSocketResponse,
    sink: WebSocketSink,
    bot: str,
    header: Principal | None,
) -> Principal | None:
    try:
        hello = await read_auth_frame(request, ws, bot, header)
        if hello is None:
            return None
        principal, _ = hello
        if not {"agent", "admin"} & principal.roles:
            raise Forbidden("the agents' feed needs the agent or admin role")
    except AuthRefused as e:
        log.info("refused agent websocket bot=%s: %s", bot, e.message)
        await sink.send({"type": "error", "error": e.code, "message": e.message})
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=e.code.encode())
        return None
    return principal


async def _queue(request: web.Request, sink: WebSocketSink, bot: str) -> None:
    handoffs = await request.app[HANDOFFS].queue(bot)
    await sink.send({"type": "queue", "handoffs": [handoff_view(h) for h in handoffs]})


async def _serve(
    request: web.Request, ws: web.WebSocketResponse, sink: WebSocketSink, bot: str
) -> None:
    async for frame in ws:
        if frame.type != WSMsgType.TEXT:
            continue
        try:
            data = web_channel.decode_json_object(frame.data)
            if data.get("type") != "queue":
                raise PayloadError(f"unknown frame type {data.get('type')!r}")
            await _queue(request, sink, bot)
        except PayloadError as e:
            await sink.send({"type": "error", "error": "bad_request", "message": str(e)})
        except StorageError as e:
            log.error("agent websocket bot=%s: queue unavailable: %s", bot, e)
            await sink.send(
                {"type": "error", "error": "unavailable", "message": "the queue is unavailable"}
            )


async def _pump(mailbox: Mailbox, sink: WebSocketSink) -> None:
    while True:
        event = await mailbox.get()  # shared with this instance's other listeners: not changed
        await sink.send({k: v for k, v in event.items() if k != "bot"})


def setup_agent_socket(app: web.Application) -> None:
    app.add_routes(routes)
