"""Normalized messages and the text splitting every channel's delivery relies on."""

from __future__ import annotations

import dataclasses

import pytest

from channels.base import InboundMessage
from channels.splitting import split_text


@pytest.mark.parametrize(
    ("text", "limit", "parts"),
    [
        ("short", 10, ["short"]),
        (
            "Hello world. This is a test! And more.",
            20,
            ["Hello world.", "This is a test!", "And more."],
        ),
        ("para one\n\npara two is long", 18, ["para one", "para two is long"]),
        ("line one\nline two", 12, ["line one", "line two"]),
        ("a" * 25, 10, ["a" * 10, "a" * 10, "a" * 5]),
        ("word " * 5, 10, ["word word", "word word", "word"]),
    ],
)
def test_split_text(text: str, limit: int, parts: list[str]) -> None:
    assert split_text(text, limit) == parts
    assert all(len(p) <= limit for p in split_text(text, limit))


def test_messages_are_frozen_and_keyed_by_conversation() -> None:
    msg = InboundMessage(
        channel="web", bot="b", conversation="c", sender="s", external_id="1", text="hi"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.text = "changed"  # type: ignore[misc]
    assert msg.conversation_key == "b:web:c"
