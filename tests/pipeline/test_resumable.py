"""A dialog waiting on HEAR is data saved with the session: a loop, a SUB and a CALLed dialog
resume exactly where they asked (tests/gateway/test_restart_embedded.py kills the server
between each question and its answer; here the turns run in one process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage.services import Stores

Talk = Callable[[str], Any]


async def test_the_quiz_conversation(chat: Callable[..., Talk], stores: Stores) -> None:
    talk = chat("resumable", user="quiz-taker")
    assert await talk("hi") == ["Welcome to the quiz.", "What is your name?"]
    assert await talk("ana") == ["Color number 1?"]
    assert await talk("not a color") == ["Please enter a color name or #RRGGBB."]
    assert await talk("blue") == ["Color number 2?"]
    session = await stores.conversations.find_active(
        bot_id="resumable", channel="test", user_id="quiz-taker"
    )
    assert session is not None
    frames = session.state["dialog"]["frames"]
    assert [(f["program"], f["unit"]) for f in frames] == [
        ("start", ""),
        ("quiz", ""),
        ("quiz", "askcolor"),
    ]
    assert await talk("green") == ["Thanks, Ana. Your answers: #0000FF, #008000"]
