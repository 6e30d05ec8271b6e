"""The web channel: the HTTP API, server-sent events and the WebSocket widget.

Its replies travel back on the request or socket that brought the message,
so this module only turns client JSON into
:class:`InboundMessage` with clear errors for anything malformed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import orjson

from channels.base import InboundMessage, PayloadError

NAME = "web"
MAX_USER_ID = 255
MAX_TEXT = 16_000


def decode_json_object(body: bytes | str) -> dict[str, Any]:
    """The body as a JSON object, or :class:`PayloadError` saying what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PayloadError(f"body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    return data


def _string_field(
    data: Mapping[str, Any], name: str, *, max_length: int, required: bool
) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise PayloadError(f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise PayloadError(f"field {name!r} must be a string")
    if len(value) > max_length:
        raise PayloadError(f"field {name!r} is longer than {max_length} characters")
    return value


def parse_message(
    bot: str,
    data: Mapping[str, Any],
    *,
    user_id: str | None = None,
    session_id: str | None = None,
) -> InboundMessage:
    """Build the inbound message of ``{"user_id", "text", "session_id"}``.

    ``user_id`` and ``session_id`` given as arguments (from a WebSocket's query
    string) apply when the payload does not carry its own.
    """
    text = _string_field(data, "text", max_length=MAX_TEXT, required=True)
    user = (
        _string_field(data, "user_id", max_length=MAX_USER_ID, required=user_id is None) or user_id
    )
    session = _string_field(data, "session_id", max_length=64, required=False) or session_id
    assert text is not None
    if not user or not user.strip():
        raise PayloadError("field 'user_id' must not be empty")
    if not text.strip():
        raise PayloadError("field 'text' must not be empty")
    return InboundMessage(
        channel=NAME,
        bot=bot,
        conversation=user,
        sender=user,
        external_id=_external_id(user, data.get("message_id")),
        text=text,
        session_id=session or None,
    )


MAX_MESSAGE_ID = 255


def _external_id(user: str, message_id: Any) -> str:
    """The inbox's id of a client's message: its ``message_id`` scoped to its user (a hash of
    both, so another user sending the same id is another message and never gets this one's
    replies), else a random one."""
    if message_id is None or message_id == "":
        return os.urandom(16).hex()
    if not isinstance(message_id, str | int) or isinstance(message_id, bool):
        raise PayloadError("field 'message_id' must be a string")
    text = str(message_id)
    if len(text) > MAX_MESSAGE_ID:
        raise PayloadError(f"field 'message_id' is longer than {MAX_MESSAGE_ID} characters")
    scoped = f"{len(user)}:{user}:{text}".encode()
    return "m" + hashlib.sha256(scoped).hexdigest()[:40]
