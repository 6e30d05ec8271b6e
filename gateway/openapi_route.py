"""``GET /api/openapi.json``: the OpenAPI 3.1 description of the HTTP API (no credential)."""

from __future__ import annotations

from functools import cache

import orjson
from aiohttp import web

from gateway import openapi

routes = web.RouteTableDef()


@cache
def _document() -> bytes:
    return orjson.dumps(openapi.build())


@routes.get("/api/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """The document, built once per process."""
    return web.Response(body=_document(), content_type="application/json")
