"""One place that turns every failure of a request into a JSON error answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from channels.base import PayloadError
from gateway.responses import json_error
from pipeline.errors import TurnFailed, TurnRejected
from pipeline.message_path import MessageFailed, MessageQueued
from storage.base import StorageError

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
        # The message is in the inbox and will be tried again: the client may wait for it
        # (history) or send it again with the same message_id.
        response = json_error(503, "turn_failed", f"{e}; it is logged and will be retried")
        response.headers["Retry-After"] = "1"
        return response
    except MessageQueued as e:
        return json_error(202, "queued", f"{e}; its replies will be in the session's history")
    except MessageFailed as e:
        return json_error(409, "message_failed", str(e))
    except StorageError as e:
        log.error("store unavailable on %s %s: %s", request.method, request.path, e)
        response = json_error(503, "unavailable", "the message could not be stored; send it again")
        response.headers["Retry-After"] = "1"
        return response
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        code = _HTTP_CODES.get(e.status, "http_error")
        log.info("%s %s -> %d %s", request.method, request.path, e.status, e.reason)
        return json_error(e.status, code, e.text or e.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; the error is logged")
