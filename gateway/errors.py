"""One place that turns every failure of a request into a JSON error answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from channels.base import PayloadError
from gateway.responses import json_error
from pipeline.errors import TurnFailed, TurnRejected

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map errors to ``{"error": code, "message": text}`` with the right status, and log them."""
    try:
        return await handler(request)
    except PayloadError as e:
        log.info("bad request %s %s: %s", request.method, request.path, e)
        return json_error(400, "bad_request", str(e))
    except TurnRejected as e:
        log.info("refused %s %s: %s", request.method, request.path, e.message)
        return json_error(e.status, e.code, e.message)
    except TurnFailed as e:
        return json_error(500, "internal", f"{e}; the error is logged")
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        code = _HTTP_CODES.get(e.status, "http_error")
        log.info("%s %s -> %d %s", request.method, request.path, e.status, e.reason)
        return json_error(e.status, code, e.text or e.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; the error is logged")
