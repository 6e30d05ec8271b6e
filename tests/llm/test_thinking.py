"""Reasoning never reaches the text: ``<think>`` blocks, wherever a stream splits them."""

from __future__ import annotations

import pytest

from pipeline.llm.thinking import ThinkFilter, strip_think

CASES = [
    ("Hello", "Hello"),
    ("<think>plan the answer</think>Hello", "Hello"),
    ("<think>plan</think>\n\nHello", "Hello"),
    ("Hi <think>hmm</think>there", "Hi there"),
    ("<think>a</think>one<think>b</think> two", "one two"),
    ("<think>never closed, cut by max_tokens", ""),
    ("Answer first <think>then reasoning that never ends", "Answer first "),
    ("a < b and <thin ice>", "a < b and <thin ice>"),
    ("ends with <thi", "ends with <thi"),
    ("x</think>y", "x</think>y"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "visible"), CASES)
def test_whole_text(text: str, visible: str) -> None:
    assert strip_think(text) == visible


@pytest.mark.parametrize(("text", "visible"), CASES)
def test_every_split_into_two_pieces(text: str, visible: str) -> None:
    for cut in range(len(text) + 1):
        thinking = ThinkFilter()
        out = thinking.feed(text[:cut]) + thinking.feed(text[cut:]) + thinking.flush()
        assert out == visible, f"split at {cut}: {text[:cut]!r} + {text[cut:]!r}"


@pytest.mark.parametrize(("text", "visible"), CASES)
def test_one_character_at_a_time(text: str, visible: str) -> None:
    thinking = ThinkFilter()
    out = "".join(thinking.feed(c) for c in text) + thinking.flush()
    assert out == visible


def test_visible_text_is_not_held_back() -> None:
    """Only a possible tag start waits for the next piece; the rest goes out at once."""
    thinking = ThinkFilter()
    assert thinking.feed("Hello wor") == "Hello wor"
    assert thinking.feed("ld <") == "ld "
    assert thinking.feed("3") == "<3"
