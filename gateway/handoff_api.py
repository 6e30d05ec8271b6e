"""HTTP routes of human handoff, for agents (role ``agent``, or ``admin``, of the bot):
the queue, taking a conversation, answering in it, releasing it to the bot.

Each handler checks the caller and the body, calls :class:`pipeline.handoff.HandoffDesk`
once, and answers its result; refusals (an unknown conversation, another bot's, one held by
another agent) are the pipeline's :class:`~pipeline.errors.TurnRejected`, which the error
middleware answers as JSON and logs.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from channels import web as web_channel
from channels.base import PayloadError
from gateway.auth import Principal, agent_id, agent_name, require_agent
from gateway.keys import BOTS, HANDOFFS
from gateway.responses import json_response
from pipeline.errors import UnknownBot
from pipeline.handoff import MAX_TEXT, Agent, handoff_view
from storage.handoff_base import RELEASE_MODES, ReleaseMode

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def as_agent(principal: Principal) -> Agent:
    return Agent(agent_id(principal), agent_name(principal), admin="admin" in principal.roles)


async def _agent(request: web.Request) -> tuple[str, Agent]:
    bot = request.match_info["bot"]
    if request.app[BOTS].get(bot) is None:
        raise UnknownBot(bot)
    return bot, as_agent(await require_agent(request, bot))


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object of the request; an empty body reads as ``{}``."""
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise web.HTTPUnsupportedMediaType(text="send the body as application/json")
    raw = await request.read()
    return web_channel.decode_json_object(raw) if raw.strip() else {}


def _text(data: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"field {name!r} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise PayloadError(f"field {name!r} is longer than {MAX_TEXT} characters")
    return value


@routes.get("/api/v1/bots/{bot}/handoffs")
async def list_handoffs(request: web.Request) -> web.Response:
    """The conversations waiting for a person and those agents hold, in serving order."""
    bot, _ = await _agent(request)
    handoffs = await request.app[HANDOFFS].queue(bot)
    return json_response({"bot": bot, "handoffs": [handoff_view(h) for h in handoffs]})


@routes.get("/api/v1/bots/{bot}/handoffs/{session_id}")
async def get_handoff(request: web.Request) -> web.Response:
    """A conversation's handoff: the open one, else its last."""
    bot, _ = await _agent(request)
    handoff = await request.app[HANDOFFS].get(bot, request.match_info["session_id"])
    return json_response({"handoff": handoff_view(handoff)})


@routes.post("/api/v1/bots/{bot}/handoffs/{session_id}/take")
async def take_handoff(request: web.Request) -> web.Response:
    """Hold a waiting conversation (again: the same answer, nothing changes); 409 when
    another agent holds it."""
    bot, agent = await _agent(request)
    handoff, taken = await request.app[HANDOFFS].take(bot, request.match_info["session_id"], agent)
    return json_response({"handoff": handoff_view(handoff), "taken": taken})


@routes.post("/api/v1/bots/{bot}/handoffs/{session_id}/messages")
async def say_in_handoff(request: web.Request) -> web.Response:
    """The agent's message to the user, through the conversation's own channel."""
    bot, agent = await _agent(request)
    text = _text(await _body(request), "text", required=True)
    assert text is not None
    said = await request.app[HANDOFFS].say(bot, request.match_info["session_id"], agent, text)
    return json_response(
        {
            "id": str(said.history_id),
            "at": said.at.isoformat(),
            "outbox_id": said.outbox_id,
            "handoff": handoff_view(said.handoff),
        },
        status=201,
    )


@routes.post("/api/v1/bots/{bot}/handoffs/{session_id}/release")
async def release_handoff(request: web.Request) -> web.Response:
    """Hand the conversation back to the bot: ``{"mode"?: "continue" | "restart",
    "message"?}``."""
    bot, agent = await _agent(request)
    data = await _body(request)
    mode = data.get("mode")
    if mode is not None and mode not in RELEASE_MODES:
        raise PayloadError("field 'mode' must be 'continue' or 'restart'")
    message = _text(data, "message", required=False)
    chosen: ReleaseMode | None = mode
    handoff = await request.app[HANDOFFS].release(
        bot, request.match_info["session_id"], agent, mode=chosen, message=message
    )
    return json_response({"handoff": handoff_view(handoff)})
