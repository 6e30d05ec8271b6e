"""JSON answers, encoded with orjson (the hot path answers every turn with one)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def json_error(status: int, code: str, message: str) -> web.Response:
    """The error body of every refusal: ``{"error": code, "message": text}``."""
    return json_response({"error": code, "message": message}, status=status)
