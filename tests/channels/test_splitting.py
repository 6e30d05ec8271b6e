"""Long replies cut under each channel's limit, at the best edge available."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from channels.base import TextFormat
from channels.markdown import parse_markdown
from channels.rendering import format_parts
from channels.splitting import split_text, utf16_len


@pytest.mark.parametrize(
    ("text", "limit", "parts"),
    [
        ("short", 10, ["short"]),
        ("", 10, []),
        (
            "Hello world. This is a test! And more.",
            20,
            ["Hello world.", "This is a test!", "And more."],
        ),
        # Paragraph edges win over fuller parts.
        ("One. Two.\n\nThree four five.", 16, ["One. Two.", "Three four five."]),
        ("line one\nline two", 12, ["line one", "line two"]),
        ("Is it? Yes! Fine… ok.", 12, ["Is it? Yes!", "Fine… ok."]),
        ("“Quoted.” Next one.", 10, ["“Quoted.”", "Next one."]),
        ("word " * 5, 10, ["word word", "word word", "word"]),
        # Only a word longer than the limit is cut inside.
        ("a" * 25, 10, ["a" * 10, "a" * 10, "a" * 5]),
        ("ok " + "b" * 12, 10, ["ok", "b" * 10, "bb"]),
        # Emoji stay whole: skin tones, ZWJ families, flags.
        ("👍🏽" * 3, 3, ["👍🏽", "👍🏽", "👍🏽"]),
        ("👨\u200d👩\u200d👧" * 2, 6, ["👨\u200d👩\u200d👧", "👨\u200d👩\u200d👧"]),
        ("🇧🇷🇵🇹🇧🇷", 3, ["🇧🇷", "🇵🇹", "🇧🇷"]),
        ("é" * 3, 2, ["éé", "é"]),
        ("e\u0301" * 3, 3, ["e\u0301", "e\u0301", "e\u0301"]),
    ],
)
def test_split_text(text: str, limit: int, parts: list[str]) -> None:
    assert split_text(text, limit) == parts
    assert all(len(p) <= limit for p in parts)


@pytest.mark.parametrize(
    ("text", "units"),
    [("abc", 3), ("é", 1), ("👍", 2), ("👍🏽", 4), ("🇧🇷", 4), ("中文", 2)],
)
def test_telegram_counts_utf16_units(text: str, units: int) -> None:
    assert utf16_len(text) == units


def test_utf16_limit_keeps_astral_emoji_whole() -> None:
    # Four emoji of 2 units each: 5 units hold two, never two and a half.
    assert split_text("😀😀😀😀", 5, length=utf16_len) == ["😀😀", "😀😀"]


class _TagBalance(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


LONG = "\n\n".join(
    [
        "# Report\n\nThe **quarterly figures** are in. Revenue grew *a lot*, "
        "see [the dashboard](https://example.com/d?x=1&y=2) for details.",
        "- first point with `inline <code>`\n- second point, longer, with **bold "
        "words that run on** and ~~struck text~~\n- third",
        "> A quote from someone important that spans\n> two lines of text.",
        "```python\ndef f(a, b):\n    return a < b and b > 0\n\nprint(f(1, 2))\n```",
        "Closing paragraph with emoji 👍🏽🇧🇷 and a final sentence. Another one! Done?",
    ]
)


@pytest.mark.parametrize("limit", [60, 90, 150, 400])
def test_telegram_parts_are_valid_html_within_the_limit(limit: int) -> None:
    parts = format_parts(LONG, TextFormat.TELEGRAM_HTML, limit)
    assert len(parts) > 1
    shown = []
    for part in parts:
        assert utf16_len(part) <= limit
        parser = _TagBalance()
        parser.feed(part)
        parser.close()
        assert parser.stack == [], part
        shown.append("".join(parser.text))
    # Nothing lost or repeated: the parts hold the whole text, whitespace aside.
    whole = parse_markdown(LONG).text
    assert re.sub(r"\s+", "", "".join(shown)) == re.sub(r"\s+", "", whole)


@pytest.mark.parametrize("text_format", [TextFormat.WHATSAPP, TextFormat.PLAIN])
@pytest.mark.parametrize("limit", [60, 150])
def test_whatsapp_and_sms_parts_close_their_markers(text_format: TextFormat, limit: int) -> None:
    parts = format_parts(LONG, text_format, limit)
    for part in parts:
        assert len(part) <= limit
        if text_format is TextFormat.PLAIN:
            assert not re.search(r"[*_~`]{2}|<b>|```", part)
        else:
            assert part.count("```") % 2 == 0, part
    # No part starts or ends inside a word of the source.
    words = set(parse_markdown(LONG).text.split())
    for part in parts:
        first = part.split()[0].strip("*_~`>•")
        assert any(w.strip("*_~`>•").startswith(first) for w in words), first


def test_a_link_is_not_cut_when_it_fits() -> None:
    parts = format_parts(
        "Read [the full guide here](https://example.com) now", TextFormat.TELEGRAM_HTML, 60
    )
    assert any('<a href="https://example.com">the full guide here</a>' in p for p in parts)


def test_a_code_block_part_keeps_its_indentation() -> None:
    code = "```\n" + "\n".join(f"    line {i}" for i in range(12)) + "\n```"
    parts = format_parts(code, TextFormat.TELEGRAM_HTML, 80)
    assert len(parts) > 1
    assert all(p.startswith("<pre>    line") for p in parts)
