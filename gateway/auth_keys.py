"""The admin's API key routes: list, create (the key shown once) and revoke a bot's keys.

``botserver keys …`` does the same from the command line, and is the only way
to make a key for every bot or the first admin key.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from channels import web as web_channel
from config.packages import valid_bot_name
from gateway.auth import Principal, require_admin
from gateway.keys import BOTS, STORES
from gateway.responses import json_error, json_response
from pipeline.errors import UnknownBot
from storage.api_keys import ROLES, ApiKey, Role

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key as listed: what it grants, never its secret."""
    return {
        "id": key.id,
        "bot": key.bot_id,
        "role": key.role,
        "user_id": key.user_id,
        "name": key.name,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


async def _admin(request: web.Request) -> tuple[str, Principal]:
    bot = request.match_info["bot"]
    principal = await require_admin(request, bot, "key management")
    if not valid_bot_name(bot) or request.app[BOTS].get(bot) is None:
        raise UnknownBot(bot)
    return bot, principal


@routes.get("/api/v1/bots/{bot}/keys")
async def list_keys(request: web.Request) -> web.Response:
    """The bot's keys and those of every bot, revoked ones included."""
    bot, _ = await _admin(request)
    keys = await request.app[STORES].api_keys.list_keys(bot)
    return json_response({"bot": bot, "keys": [key_json(k) for k in keys]})


@routes.post("/api/v1/bots/{bot}/keys")
async def create_key(request: web.Request) -> web.Response:
    """``{"role", "name"?, "user_id"?}`` -> 201 with the key, shown this once."""
    bot, principal = await _admin(request)
    data = web_channel.decode_json_object(await request.read())
    role, name, user_id = data.get("role"), data.get("name", ""), data.get("user_id")
    if role not in ROLES:
        return json_error(400, "bad_request", f"field 'role' must be one of {', '.join(ROLES)}")
    if not isinstance(name, str) or len(name) > 200:
        return json_error(400, "bad_request", "field 'name' must be a string of 200 or fewer")
    if (role == "user") != (user_id is not None):
        return json_error(400, "bad_request", "field 'user_id' is for, and needed by, user keys")
    if user_id is not None and (not isinstance(user_id, str) or not 0 < len(user_id) <= 255):
        return json_error(400, "bad_request", "field 'user_id' must be a non-empty string")
    role_: Role = role
    key, secret = await request.app[STORES].api_keys.create(
        bot_id=bot, role=role_, user_id=user_id, name=name
    )
    log.info("api key %s (%s) created for bot=%s by %s", key.id, key.role, bot, principal.via)
    return json_response({**key_json(key), "key": secret}, status=201)


@routes.delete("/api/v1/bots/{bot}/keys/{key_id}")
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke one of the bot's keys (a key of every bot only by an admin of every bot)."""
    bot, principal = await _admin(request)
    key_id = request.match_info["key_id"]
    store = request.app[STORES].api_keys
    key = next((k for k in await store.list_keys(bot) if k.id == key_id), None)
    if key is None or (key.bot_id is None and principal.bot_id is not None):
        return json_error(404, "unknown_key", f"no key {key_id!r} of bot {bot!r}")
    if not await store.revoke(key_id):
        return json_error(409, "revoked", f"key {key_id!r} is already revoked")
    log.info("api key %s revoked for bot=%s by %s", key_id, bot, principal.via)
    return json_response({"id": key_id, "revoked": True})
