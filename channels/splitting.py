"""Cutting long text into parts a provider accepts.

Cuts prefer paragraph breaks, then line breaks, then sentence ends, then
spaces; a word is cut only when it alone is longer than the limit, and then
between user-perceived characters, so an emoji (with its skin tone, a flag, a
ZWJ family) is never cut in half.

The splitter is generic over how a part is measured: the caller passes a
``measure(start, end)`` that renders ``text[start:end]`` the way it will be
sent and counts it the way the provider counts (see :func:`length_unit`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from channels.base import TextFormat

Measure = Callable[[int, int], int]
Trim = Callable[[int, int], tuple[int, int]]

# Edges in order of preference. Each pattern matches the whitespace dropped at a cut.
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_LINE = re.compile(r"[ \t]*\n\s*")
# Sentence ends (also the ideographic full stop and marks), then closing quotes or brackets.
_SENTENCE = re.compile("(?<=[.!?\u2026\u3002\uff01\uff1f])[\"'\u201d\u2019\u00bb)\\]]*(\\s+)")
_WORD = re.compile(r"\s+")
_LEVELS = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts: an emoji beyond U+FFFF counts 2."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def length_unit(text_format: TextFormat) -> Callable[[str], int]:
    """How a provider of ``text_format`` counts its length limit.

    Telegram counts UTF-16 code units; WhatsApp, Twilio and the web count
    characters (code points).
    """
    return utf16_len if text_format is TextFormat.TELEGRAM_HTML else len


def _joins_previous(text: str, index: int) -> bool:
    """Whether a cut before ``text[index]`` would split a user-perceived character."""
    char = text[index]
    code = ord(char)
    previous = ord(text[index - 1])
    if previous == 0x200D or code == 0x200D:  # zero-width joiner sequences
        return True
    if previous == 0x0D and code == 0x0A:
        return True
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Mc"):
        return True
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return True
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:  # skin tones, tags
        return True
    if _is_regional(code) and _is_regional(previous):
        # Flags are pairs of regional indicators: join only the second of each pair.
        run = 0
        at = index - 1
        while at >= 0 and _is_regional(ord(text[at])):
            run += 1
            at -= 1
        return run % 2 == 1
    return False


def _is_regional(code: int) -> bool:
    return 0x1F1E6 <= code <= 0x1F1FF


def grapheme_edges(text: str, start: int, end: int) -> list[int]:
    """Offsets in ``(start, end]`` where ``text`` may be cut without splitting a character."""
    return [i for i in range(start + 1, end) if not _joins_previous(text, i)] + [end]


def strip_range(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` without the whitespace at either end."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_ranges(
    text: str,
    limit: int,
    measure: Measure,
    *,
    protected: Sequence[tuple[int, int]] = (),
    trim: Trim | None = None,
) -> list[tuple[int, int]]:
    """Cut ``text`` into ``(start, end)`` ranges whose ``measure`` is at most ``limit``.

    ``measure`` must not shrink as a range grows. No cut falls inside a
    ``protected`` range (a link, inline code) unless that range alone is too
    long. ``trim`` narrows a range to what is sent (by default: without its
    surrounding whitespace). Raises :class:`ValueError` when a single character
    measures over the limit (the markup around it alone is too long).
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    splitter = _Splitter(text, limit, measure, protected, trim or _default_trim(text))
    start, end = splitter.trim(0, len(text))
    if start >= end:
        return []
    return splitter.split(start, end, 0)


def _default_trim(text: str) -> Trim:
    return lambda start, end: strip_range(text, start, end)


class _Splitter:
    def __init__(
        self,
        text: str,
        limit: int,
        measure: Measure,
        protected: Sequence[tuple[int, int]],
        trim: Trim,
    ) -> None:
        self.text = text
        self.limit = limit
        self.measure = measure
        self.protected = sorted(protected)
        self.trim = trim

    def fits(self, start: int, end: int) -> bool:
        return self.measure(start, end) <= self.limit

    def split(self, start: int, end: int, level: int) -> list[tuple[int, int]]:
        if self.fits(start, end):
            return [(start, end)]
        if level == len(_LEVELS):
            return self.hard(start, end)
        units = self.units(start, end, level)
        if len(units) <= 1:
            return self.split(start, end, level + 1)
        parts: list[tuple[int, int]] = []
        index = 0
        while index < len(units):
            first = units[index][0]
            if not self.fits(*units[index]):
                # A unit too long alone is cut at finer edges; its parts start afresh.
                parts.extend(self.split(*units[index], level + 1))
                index += 1
                continue
            # The most following units that still fit together with this one.
            low, high = index, len(units) - 1
            while low < high:
                middle = (low + high + 1) // 2
                if self.fits(first, units[middle][1]):
                    low = middle
                else:
                    high = middle - 1
            parts.append((first, units[low][1]))
            index = low + 1
        return parts

    def units(self, start: int, end: int, level: int) -> list[tuple[int, int]]:
        pattern = _LEVELS[level]
        units: list[tuple[int, int]] = []
        at = start
        for match in pattern.finditer(self.text, start, end):
            gap_start, gap_end = match.span(match.lastindex or 0)
            if gap_start <= at or self.inside_protected(gap_start, gap_end):
                continue
            unit = self.trim(at, gap_start)
            if unit[0] < unit[1]:
                units.append(unit)
            at = gap_end
        unit = self.trim(at, end)
        if unit[0] < unit[1]:
            units.append(unit)
        return units

    def inside_protected(self, start: int, end: int) -> bool:
        return any(p_start < end and start < p_end for p_start, p_end in self.protected)

    def hard(self, start: int, end: int) -> list[tuple[int, int]]:
        parts: list[tuple[int, int]] = []
        while start < end:
            if self.fits(start, end):
                parts.append((start, end))
                break
            edges = grapheme_edges(self.text, start, end)
            low, high = 0, len(edges) - 1
            if not self.fits(start, edges[0]):
                raise ValueError(f"limit {self.limit} is too small for one character")
            while low < high:
                middle = (low + high + 1) // 2
                if self.fits(start, edges[middle]):
                    low = middle
                else:
                    high = middle - 1
            parts.append((start, edges[low]))
            start, end = self.trim(edges[low], end)
        return parts


def split_text(text: str, limit: int, *, length: Callable[[str], int] = len) -> list[str]:
    """Split plain ``text`` into parts of at most ``limit`` as counted by ``length``.

    Cuts prefer paragraph breaks, then line breaks, then sentence ends, then
    spaces; a word longer than the limit is cut between characters.
    """
    ranges = split_ranges(text, limit, lambda start, end: length(text[start:end]))
    return [text[start:end] for start, end in ranges]
