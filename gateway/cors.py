"""CORS for the web API: the origins of ``BOTSERVER_CORS_ORIGINS`` may call ``/api/`` from a
browser page of theirs; no other origin gets a CORS header (same-origin pages, such as the
widget at ``/chat/{bot}``, need none).

- A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from a listed origin is
  answered 204 with the methods and request headers the API takes (``Authorization``
  among them: credentials are bearer tokens) and ``Access-Control-Max-Age``; from any other
  origin it is a 403 with no CORS header, so the browser refuses the call.
- An answer to a listed origin carries ``Access-Control-Allow-Origin`` with that origin
  (never ``*``) and exposes ``Retry-After`` and ``WWW-Authenticate``, so a page can read a
  429's wait. ``Access-Control-Allow-Credentials`` is never sent: the API reads no cookie,
  and a page sends its token in ``Authorization`` with ``fetch``'s default credentials mode.
- Every ``/api/`` answer carries ``Vary: Origin`` while a list is configured, so that a cache
  never hands one origin's answer to another.

WebSockets are not subject to CORS; the socket's credential is its first frame, which a
page of another origin cannot take from the widget's storage, so the WebSocket needs no
origin check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from gateway.responses import json_error

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PREFIX = "/api/"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Accept, Idempotency-Key, Last-Event-ID"
EXPOSE_HEADERS = "Retry-After, WWW-Authenticate"
MAX_AGE = "600"


def normalize_origin(raw: str) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin``; ``ValueError`` otherwise."""
    text = raw.strip()
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(
            f"BOTSERVER_CORS_ORIGINS: {raw!r} is not an origin (scheme://host[:port], no path)"
        )
    port = parts.port  # ValueError for a port that is not a number
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """The origins allowed to call the API from a browser; empty: same-origin only."""

    origins: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CorsConfig:
        """``BOTSERVER_CORS_ORIGINS``: comma-separated origins (``*`` is refused: name them)."""
        env = os.environ if env is None else env
        raw = env.get("BOTSERVER_CORS_ORIGINS", "")
        items = [item for item in (part.strip() for part in raw.split(",")) if item]
        if "*" in items:
            raise ValueError("BOTSERVER_CORS_ORIGINS: name the origins, '*' is not accepted")
        return cls(frozenset(normalize_origin(item) for item in items))

    def allows(self, origin: str) -> bool:
        return origin in self.origins


CORS_CONFIG = web.AppKey("cors_config", CorsConfig)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer preflights of ``/api/`` routes before anything else runs."""
    if (
        request.method == "OPTIONS"
        and request.path.startswith(PREFIX)
        and "Access-Control-Request-Method" in request.headers
    ):
        return _preflight(request, request.app[CORS_CONFIG])
    return await handler(request)


def _preflight(request: web.Request, config: CorsConfig) -> web.StreamResponse:
    origin = request.headers.get("Origin", "")
    if not config.allows(origin):
        log.info("CORS preflight from origin %r refused on %s", origin[:200], request.path)
        response = json_error(403, "forbidden", f"origin {origin[:200]!r} may not call this API")
        response.headers["Vary"] = "Origin"
        return response
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE,
            "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        },
    )


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer of an ``/api/`` route, streamed ones and errors
    included, as its headers go out."""
    config = request.app[CORS_CONFIG]
    if not config.origins or not request.path.startswith(PREFIX) or response.status == 101:
        return
    if "Access-Control-Allow-Origin" in response.headers:  # a preflight's own
        return
    _vary_origin(response)
    origin = request.headers.get("Origin")
    if origin is not None and config.allows(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def _vary_origin(response: web.StreamResponse) -> None:
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Origin"
    elif "origin" not in {v.strip().lower() for v in vary.split(",")}:
        response.headers["Vary"] = f"{vary}, Origin"


def setup_cors(app: web.Application, config: CorsConfig) -> None:
    app[CORS_CONFIG] = config
    app.on_response_prepare.append(add_cors_headers)
