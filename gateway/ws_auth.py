"""The first frame of every WebSocket of the gateway: its credential.

Credentials never travel in a socket's URL (proxies log URLs); a client sends
``{"type": "auth", "token": …}`` first, within :data:`AUTH_TIMEOUT` seconds, or
leaves ``token`` out when its upgrade request carried an ``Authorization`` header.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSMsgType, web

from channels import web as web_channel
from channels.base import PayloadError
from gateway.auth import Principal, Unauthorized, check_bot
from gateway.keys import AUTH

AUTH_TIMEOUT = 10.0  # seconds for the first frame, the credential
_SHAPE = 'the first frame must be {"type": "auth", "token": …}'


async def read_auth_frame(
    request: web.Request, ws: web.WebSocketResponse, bot: str, header: Principal | None
) -> tuple[Principal, dict[str, Any]] | None:
    """The caller the auth frame names (or the upgrade's ``header`` principal) for ``bot``,
    and the frame's fields; None when the client closed first. Raises
    :class:`~gateway.auth.AuthRefused` for a missing, malformed or refused credential."""
    try:
        frame = await ws.receive(timeout=AUTH_TIMEOUT)
    except TimeoutError:
        raise Unauthorized(f"no auth frame within {AUTH_TIMEOUT:.0f} seconds") from None
    if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        return None
    if frame.type != WSMsgType.TEXT:
        raise Unauthorized(_SHAPE)
    try:
        data = web_channel.decode_json_object(frame.data)
    except PayloadError as e:
        raise Unauthorized(f"the first frame must be an auth frame: {e}") from e
    if data.get("type") != "auth":
        raise Unauthorized(_SHAPE)
    token = data.get("token")
    if token is None and header is not None:
        return header, data
    if isinstance(token, str):
        return check_bot(await request.app[AUTH].authenticate(token), bot), data
    raise Unauthorized("field 'token' of the auth frame must be a string")
