"""``GET /api/v1/bots/{bot}/llm-cache``: the bot's semantic cache, its settings and counters.

The counters are this process's since it started (hits and misses by tier, near matches
the guard refused, answers stored, turns that could not use the cache): with several
gateway instances, each answers its own, as a metrics scrape of each would.
"""

from __future__ import annotations

from aiohttp import web

from config.packages import valid_bot_name
from gateway.auth import require_admin
from gateway.keys import BOTS, LLM_CACHE
from gateway.responses import json_response
from pipeline.errors import UnknownBot

routes = web.RouteTableDef()


@routes.get("/api/v1/bots/{bot}/llm-cache")
async def llm_cache_state(request: web.Request) -> web.Response:
    """The bot's cache rows as read now, and this process's counters by tier (admin)."""
    name = request.match_info["bot"]
    await require_admin(request, name, "cache state")
    bot = request.app[BOTS].get(name) if valid_bot_name(name) else None
    if bot is None:
        raise UnknownBot(name)
    cache = request.app[LLM_CACHE]
    return json_response(cache.report(name, cache.settings(name, bot.package.config)))
