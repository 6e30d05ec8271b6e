"""A reply rendered into the sends each channel accepts."""

from __future__ import annotations

import dataclasses

import pytest

from channels.base import (
    Capabilities,
    OutboundMessage,
    RenderedPart,
    StreamMode,
    Suggestion,
    TextFormat,
)
from channels.rendering import render, render_message
from channels.splitting import utf16_len

TELEGRAM = Capabilities(
    max_text_length=4096,
    text_format=TextFormat.TELEGRAM_HTML,
    can_edit=True,
    stream_mode=StreamMode.EDIT,
    max_buttons=8,
    max_button_label=64,
)
WHATSAPP = Capabilities(
    max_text_length=4096,
    text_format=TextFormat.WHATSAPP,
    max_buttons=3,
    max_button_label=20,
    max_list_rows=10,
    max_list_row_title=24,
)
SMS = Capabilities(max_text_length=1600, text_format=TextFormat.PLAIN)
WEB = Capabilities(max_text_length=100_000, text_format=TextFormat.MARKDOWN, max_buttons=10)

YES_NO = (Suggestion("y", "Yes"), Suggestion("n", "No"))


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        (
            TELEGRAM,
            [RenderedPart("Pick <b>one</b>:", TextFormat.TELEGRAM_HTML, buttons=YES_NO)],
        ),
        (WHATSAPP, [RenderedPart("Pick *one*:", TextFormat.WHATSAPP, buttons=YES_NO)]),
        (SMS, [RenderedPart("Pick one:\n\n1. Yes\n2. No", TextFormat.PLAIN)]),
        (WEB, [RenderedPart("Pick **one**:", TextFormat.MARKDOWN, buttons=YES_NO)]),
    ],
)
def test_a_short_reply_with_options(
    capabilities: Capabilities, expected: list[RenderedPart]
) -> None:
    assert render("Pick **one**:", capabilities, suggestions=YES_NO) == expected


SENTENCE = "This sentence is part of a long answer about opening hours. "


@pytest.mark.parametrize(
    ("capabilities", "count"),
    [(TELEGRAM, utf16_len), (WHATSAPP, len), (SMS, len)],
)
def test_a_long_reply_is_split_under_the_limit_at_sentence_edges(
    capabilities: Capabilities, count: object
) -> None:
    text = "Hello 👋🏽! " + SENTENCE * 150
    parts = render(text, capabilities, suggestions=YES_NO)
    assert len(parts) > 1
    for part in parts:
        assert count(part.text) <= capabilities.max_text_length  # type: ignore[operator]
        assert part.text.endswith((".", "No"))
    # Buttons ride on the last part only.
    assert [bool(p.buttons) for p in parts[:-1]] == [False] * (len(parts) - 1)
    if capabilities.max_buttons:
        assert parts[-1].buttons == YES_NO


def test_the_part_with_buttons_fits_the_interactive_body_limit() -> None:
    parts = render(SENTENCE * 30, WHATSAPP, suggestions=YES_NO, interactive_text_limit=1024)
    # 1,800 characters fit one text message, not one interactive body: two parts.
    assert len(parts) == 2
    assert not parts[0].buttons
    assert len(parts[-1].text) <= 1024 and parts[-1].buttons == YES_NO


def test_many_options_become_a_list_and_the_rest_text() -> None:
    options = [Suggestion(f"k{i}", f"Store number {i} downtown") for i in range(1, 13)]
    (part,) = render("Which store?", WHATSAPP, suggestions=options, list_title="Stores")
    assert part.as_list and len(part.buttons) == 10 and part.list_title == "Stores"
    assert all(len(b.label) <= 24 for b in part.buttons)
    assert part.text == "Which store?\n\n11. Store number 11 downtown\n12. Store number 12 downtown"


def test_options_without_text_still_have_a_body() -> None:
    (part,) = render("", WHATSAPP, suggestions=YES_NO, list_title="Choose")
    assert part.text == "Choose" and part.buttons == YES_NO


def test_an_empty_reply_renders_nothing() -> None:
    assert render("  \n ", SMS) == []


def test_render_message_uses_text_and_suggestions() -> None:
    message = OutboundMessage(
        channel="sms", bot="b", conversation="c", text="*Hi*", suggestions=YES_NO
    )
    assert render_message(message, dataclasses.replace(SMS)) == [
        RenderedPart("Hi\n\n1. Yes\n2. No", TextFormat.PLAIN)
    ]
