"""What of a turn's replies is read aloud: the bots' markdown as plain sentences.

The markup goes (``**bold**`` is read as "bold", a link as its text), and so do what no
voice should read: code blocks, bare URLs, list bullets and rules. The replies are joined
as paragraphs and cut to the bot's ``tts-max-chars`` at the last sentence that fits (a
word, when no sentence does), so that the voice note never stops mid-word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from channels.markdown import BULLET, RULE, parse_markdown

_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_SENTENCE_END = re.compile(r"[.!?…](?=\s)|[.!?…]$")


def speakable(markdown: str) -> str:
    """One reply's markdown as the text a voice reads."""
    rich = parse_markdown(markdown)
    text = "".join(span.text for span in rich.spans if not span.style.pre)
    text = _URL.sub("", text).replace(BULLET, "").replace(RULE, "")
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def spoken_text(replies: Sequence[str], max_chars: int) -> str:
    """The replies read aloud, one paragraph each, at most ``max_chars`` characters."""
    # Markup takes room: twice the limit of markdown is more than enough to fill it, and
    # no longer reply is parsed whole for a voice note that reads its start.
    spoken = (speakable(reply[: 2 * max_chars]) for reply in replies)
    text = "\n\n".join(part for part in spoken if part)
    return cut(text, max_chars)


def cut(text: str, max_chars: int) -> str:
    """``text`` up to the last sentence end within ``max_chars`` (else the last word)."""
    if len(text) <= max_chars:
        return text
    head = text[: max_chars + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() <= max_chars]
    if ends and ends[-1] >= max_chars // 3:
        return head[: ends[-1]].strip()
    space = head.rfind(" ", 0, max_chars + 1)
    return (head[:space] if space > 0 else head[:max_chars]).strip()
