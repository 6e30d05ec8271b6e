"""The benchmark's baseline: a bare aiohttp handler with the gateway's message API shape.

It runs the way the gateway runs (``web.run_app`` on uvloop, no access log)
and does the least a message endpoint can do: read and decode the JSON body,
answer a small JSON reply of the same shape as the gateway's. No session, no
dialog, no storage. The gateway's throughput divided by this one's is the
benchmark's ratio: how much of a bare aiohttp server's speed a full dialog
turn keeps.

    python -m bench.baseline_server --host 127.0.0.1 --port 8090
"""

from __future__ import annotations

import argparse
import uuid

import orjson
from aiohttp import web

GREETING = "Hello! I am the baseline. What is your name?"


async def post_message(request: web.Request) -> web.Response:
    """Decode the message, answer ``{"session_id", "replies"}`` without storing anything."""
    data = orjson.loads(await request.read())
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return web.json_response({"error": "bad_request"}, status=400)
    session_id = data.get("session_id") or uuid.uuid4().hex
    return web.json_response(
        {"session_id": session_id, "replies": [{"text": GREETING, "suggestions": []}]}
    )


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/api/v1/bots/{bot}/messages", post_message)
    app.router.add_get("/ready", ready)
    app.router.add_get("/health", ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - as in the gateway, uvloop is optional
        pass
    web.run_app(
        create_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda text: print(text, flush=True),
    )


if __name__ == "__main__":
    main()
