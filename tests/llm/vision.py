"""What a vision model would see in a request the fake servers received: the images of its
user messages, decoded and checked against each provider's wire format (OpenAI's
``image_url`` parts with a data URL, Anthropic's base64 ``image`` blocks), as the real
servers check them: a part that is malformed fails the test."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

OPENAI_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}
ANTHROPIC_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}
_DATA_URL = re.compile(r"data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)")


def _decoded(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as e:
        raise AssertionError(f"image data is not base64: {e}") from e


def openai_images(body: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(content type, bytes) of every ``image_url`` part of the request's user messages."""
    found: list[tuple[str, bytes]] = []
    for message in body["messages"]:
        content = message.get("content")
        if message["role"] != "user" or isinstance(content, str):
            continue
        assert isinstance(content, list), content
        for part in content:
            assert part["type"] in ("text", "image_url"), part
            if part["type"] == "text":
                assert isinstance(part["text"], str)
                continue
            url = part["image_url"]["url"]
            assert part["image_url"].get("detail", "auto") in ("auto", "low", "high")
            match = _DATA_URL.fullmatch(url)
            assert match is not None, f"not a base64 data URL: {url[:60]}"
            assert match[1] in OPENAI_TYPES, match[1]
            found.append((match[1], _decoded(match[2])))
    return found


def anthropic_images(body: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(content type, bytes) of every ``image`` block of the request's user turns."""
    found: list[tuple[str, bytes]] = []
    for message in body["messages"]:
        if message["role"] != "user" or isinstance(message["content"], str):
            continue
        for block in message["content"]:
            if block["type"] != "image":
                continue
            source = block["source"]
            assert source["type"] == "base64", source["type"]
            assert source["media_type"] in ANTHROPIC_TYPES, source["media_type"]
            found.append((source["media_type"], _decoded(source["data"])))
    return found


def user_text(body: dict[str, Any]) -> str:
    """All the text of the request's last user message, whatever its shape."""
    message = [m for m in body["messages"] if m["role"] == "user"][-1]
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content if part.get("type") == "text")
