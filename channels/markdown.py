"""The bots' markdown, converted to each channel's own formatting.

A reply is parsed once (markdown-it-py, CommonMark plus ``~~strike~~``) into
:class:`RichText`: the text a user reads, as spans that each carry one
:class:`Style`. Every channel format is a rendering of that one structure, and
splitting works on it too: a part is a slice of the spans, rendered on its own,
so every tag or marker opened in a part is closed in the same part.

Raw HTML in the source is never interpreted: it reaches Telegram escaped and
WhatsApp or SMS as the characters the bot wrote.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from markdown_it import MarkdownIt
from markdown_it.token import Token

from channels.base import TextFormat

BULLET = "•"
RULE = "———"


@dataclass(frozen=True, slots=True)
class Style:
    """How one span of text is shown; ``href`` makes it a link, ``pre`` a code block."""

    bold: bool = False
    italic: bool = False
    strike: bool = False
    code: bool = False
    pre: bool = False
    language: str | None = None
    href: str | None = None
    quote: bool = False


PLAIN_STYLE = Style()


@dataclass(frozen=True, slots=True)
class Span:
    """A run of text in one style."""

    text: str
    style: Style = PLAIN_STYLE


@dataclass(frozen=True, slots=True)
class RichText:
    """A reply's text as styled spans; ``text`` is what the user reads, markup aside."""

    spans: tuple[Span, ...] = ()
    text: str = field(init=False)
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts: list[int] = []
        offset = 0
        for span in self.spans:
            starts.append(offset)
            offset += len(span.text)
        object.__setattr__(self, "text", "".join(s.text for s in self.spans))
        object.__setattr__(self, "_starts", tuple(starts))

    def __len__(self) -> int:
        return len(self.text)

    def slice(self, start: int, end: int) -> RichText:
        """The spans covering ``text[start:end]``, cut at both ends."""
        start, end = max(start, 0), min(end, len(self.text))
        if start >= end:
            return RichText()
        first = bisect.bisect_right(self._starts, start) - 1
        spans: list[Span] = []
        for index in range(first, len(self.spans)):
            span_start = self._starts[index]
            if span_start >= end:
                break
            span = self.spans[index]
            cut = span.text[max(start - span_start, 0) : end - span_start]
            if cut:
                spans.append(Span(cut, span.style))
        return RichText(tuple(spans))

    def style_at(self, offset: int) -> Style:
        """The style of the character at ``offset``."""
        index = bisect.bisect_right(self._starts, offset) - 1
        return self.spans[max(index, 0)].style if self.spans else PLAIN_STYLE

    def protected(self) -> list[tuple[int, int]]:
        """Ranges a split should not cut: link texts and inline code."""
        return [
            (start, start + len(span.text))
            for start, span in zip(self._starts, self.spans, strict=True)
            if span.style.href is not None or span.style.code
        ]

    def __add__(self, other: RichText) -> RichText:
        return RichText(_merge([*self.spans, *other.spans]))


# -- parsing ------------------------------------------------------------------------


@functools.cache
def _parser() -> MarkdownIt:
    # html=False: raw HTML stays text, so it is escaped for Telegram instead of passed on.
    return MarkdownIt("commonmark", {"html": False}).enable("strikethrough")


def parse_markdown(source: str) -> RichText:
    """Parse the bots' markdown into :class:`RichText`."""
    return _Walker().walk(_parser().parse(source))


def plain_rich(text: str) -> RichText:
    """Text taken literally, with no markup of its own."""
    return RichText((Span(text),)) if text else RichText()


class _Walker:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.pending = ""
        self.quote = 0
        self.heading = False
        self.lists: list[list[int | bool]] = []  # [ordered, next number, tight]
        self.item_start = False

    def walk(self, tokens: Sequence[Token]) -> RichText:
        for index, token in enumerate(tokens):
            self._block(token, tokens, index)
        return RichText(_merge(self.spans))

    def _request(self, separator: str) -> None:
        if self.spans and len(separator) > len(self.pending):
            self.pending = separator

    def _emit(self, text: str, style: Style) -> None:
        if not text:
            return
        if self.pending:
            # A blank line inside a quote stays inside it, so Telegram shows one quote.
            inside = self.quote > 0 and self.spans[-1].style.quote
            self.spans.append(Span(self.pending, Style(quote=True) if inside else PLAIN_STYLE))
            self.pending = ""
        self.spans.append(Span(text, style))

    def _base(self) -> Style:
        return Style(quote=True) if self.quote else PLAIN_STYLE

    def _block(self, token: Token, tokens: Sequence[Token], index: int) -> None:
        kind = token.type
        if kind == "paragraph_open":
            if self.item_start:
                self.item_start = False
            else:
                self._request("\n" if token.hidden else "\n\n")
        elif kind == "heading_open":
            self._request("\n\n")
            self.heading = True
        elif kind == "heading_close":
            self.heading = False
        elif kind in ("bullet_list_open", "ordered_list_open"):
            self.item_start = False
            self._request("\n" if self.lists else "\n\n")
            start = int(token.attrs.get("start", 1) or 1)
            self.lists.append([kind == "ordered_list_open", start, _tight(tokens, index)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
            self._request("\n" if self.lists else "\n\n")
        elif kind == "list_item_open":
            ordered, number, tight = self.lists[-1]
            self._request("\n" if tight else "\n\n")
            marker = f"{number}. " if ordered else f"{BULLET} "
            self.lists[-1][1] = int(number) + 1
            self._emit("  " * (len(self.lists) - 1) + marker, self._base())
            self.item_start = True
        elif kind == "blockquote_open":
            self._request("\n\n")
            self.quote += 1
        elif kind == "blockquote_close":
            self.quote -= 1
            self._request("\n\n")
        elif kind in ("fence", "code_block"):
            if not self.item_start:
                self._request("\n\n")
            self.item_start = False
            language = token.info.split()[0] if token.info.strip() else None
            code = token.content.rstrip("\n") or " "
            self._emit(code, replace(self._base(), pre=True, language=language))
        elif kind == "hr":
            self._request("\n\n")
            self._emit(RULE, self._base())
        elif kind == "inline":
            self.item_start = False
            self._inline(token.children or [])
        elif kind == "html_block":  # only with html=True; kept literal if ever enabled
            self._request("\n\n")
            self._emit(token.content.rstrip("\n"), self._base())

    def _inline(self, children: Sequence[Token]) -> None:
        bold = italic = strike = 0
        links: list[str] = []
        style = self._inline_style(0, 0, 0, None)
        for child in children:
            kind = child.type
            if kind in ("text", "text_special", "html_inline"):
                self._emit(child.content, style)
            elif kind in ("softbreak", "hardbreak"):
                self._emit("\n", replace(style, href=None))
            elif kind == "code_inline":
                self._emit(child.content, replace(style, code=True))
            elif kind == "image":
                src = str(child.attrs.get("src", ""))
                self._emit(child.content or src, replace(style, href=src))
            else:
                if kind == "strong_open":
                    bold += 1
                elif kind == "strong_close":
                    bold -= 1
                elif kind == "em_open":
                    italic += 1
                elif kind == "em_close":
                    italic -= 1
                elif kind == "s_open":
                    strike += 1
                elif kind == "s_close":
                    strike -= 1
                elif kind == "link_open":
                    links.append(str(child.attrs.get("href", "")))
                elif kind == "link_close":
                    links.pop()
                else:
                    continue
                # Styles change only at these tokens: build the next one here, once.
                style = self._inline_style(bold, italic, strike, links[-1] if links else None)

    def _inline_style(self, bold: int, italic: int, strike: int, href: str | None) -> Style:
        return Style(
            bold=bold > 0 or self.heading,
            italic=italic > 0,
            strike=strike > 0,
            href=href,
            quote=self.quote > 0,
        )


def _tight(tokens: Sequence[Token], index: int) -> bool:
    # markdown-it hides the paragraphs of a tight list; the first one tells.
    level = tokens[index].level
    for token in tokens[index + 1 :]:
        if token.type == "paragraph_open" and token.level == level + 2:
            return token.hidden
        if token.level <= level and token.type.endswith("_close"):
            break
    return True


def _merge(spans: Sequence[Span]) -> tuple[Span, ...]:
    merged: list[Span] = []
    for span in spans:
        if not span.text:
            continue
        if merged and merged[-1].style == span.style:
            merged[-1] = Span(merged[-1].text + span.text, span.style)
        else:
            merged.append(span)
    return tuple(merged)


# -- rendering ----------------------------------------------------------------------

# A mark is one wrapper around text; outer marks first, so nesting is stable.
_Mark = tuple[str, str | None]


def _marks(style: Style) -> list[_Mark]:
    marks: list[_Mark] = []
    if style.quote:
        marks.append(("quote", None))
    if style.bold:
        marks.append(("b", None))
    if style.italic:
        marks.append(("i", None))
    if style.strike:
        marks.append(("s", None))
    if style.href is not None:
        marks.append(("a", style.href))
    if style.pre:
        marks.append(("pre", style.language))
    elif style.code:
        marks.append(("code", None))
    return marks


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_HTML_OPEN = {"quote": "<blockquote>", "b": "<b>", "i": "<i>", "s": "<s>", "code": "<code>"}
_HTML_CLOSE = {"quote": "</blockquote>", "b": "</b>", "i": "</i>", "s": "</s>", "code": "</code>"}
_WHATSAPP_MARKERS = {"quote": "", "b": "*", "i": "_", "s": "~", "code": "`", "pre": "```"}


def render_rich(rich: RichText, text_format: TextFormat) -> str:
    """Render :class:`RichText` in a channel's format.

    ``MARKDOWN`` renders as plain text here: markdown source is passed through by
    :func:`to_format` without parsing.
    """
    if text_format is TextFormat.TELEGRAM_HTML:
        return _render_html(rich)
    if text_format is TextFormat.WHATSAPP:
        return _render_whatsapp(rich)
    return _render_plain(rich)


def to_format(markdown: str, text_format: TextFormat) -> str:
    """Convert the bots' markdown to ``text_format`` (``MARKDOWN`` is returned unchanged)."""
    if text_format is TextFormat.MARKDOWN:
        return markdown
    return render_rich(parse_markdown(markdown), text_format)


def _html_open(mark: _Mark) -> str:
    kind, value = mark
    if kind == "a":
        href = _escape_html(value or "").replace('"', "&quot;")
        return f'<a href="{href}">'
    if kind == "pre":
        return f'<pre><code class="language-{_escape_html(value)}">' if value else "<pre>"
    return _HTML_OPEN[kind]


def _html_close(mark: _Mark) -> str:
    kind, value = mark
    if kind == "a":
        return "</a>"
    if kind == "pre":
        return "</code></pre>" if value else "</pre>"
    return _HTML_CLOSE[kind]


def _render_html(rich: RichText) -> str:
    out: list[str] = []
    stack: list[_Mark] = []
    for span in rich.spans:
        marks = _marks(span.style)
        keep = _common(stack, marks)
        while len(stack) > keep:
            out.append(_html_close(stack.pop()))
        for mark in _still_to_open(stack, marks):
            out.append(_html_open(mark))
            stack.append(mark)
        out.append(_escape_html(span.text))
    while stack:
        out.append(_html_close(stack.pop()))
    return "".join(out)


def _common(stack: Sequence[_Mark], marks: Sequence[_Mark]) -> int:
    # Marks already open stay open while the next span still wants them, whatever
    # order they were opened in: *a **b** c* stays one italic around a bold.
    wanted = set(marks)
    keep = 0
    for have in stack:
        if have not in wanted:
            break
        keep += 1
    return keep


def _still_to_open(stack: Sequence[_Mark], marks: Sequence[_Mark]) -> list[_Mark]:
    return [mark for mark in marks if mark not in stack]


def _render_whatsapp(rich: RichText) -> str:
    out: list[str] = []
    stack: list[_Mark] = []
    link: str | None = None  # WhatsApp has no links: "text (url)", the url once per link
    wrapped = ""
    for span in rich.spans:
        marks = [mark for mark in _marks(span.style) if mark[0] != "a"]
        keep = _common(stack, marks)
        while len(stack) > keep:
            _whatsapp_close(out, stack.pop())
        if span.style.href != link:
            if link is not None:
                _hugging(out, _link_suffix(link, wrapped))
            link, wrapped = span.style.href, ""
        text = span.text
        wrapped += text
        if span.style.quote and not span.style.pre:
            text = text.replace("\n", "\n> ")
        opening = _still_to_open(stack, marks)
        if opening and not span.style.pre:
            # WhatsApp only formats when the marker touches the text: spaces go outside.
            stripped = text.lstrip()
            out.append(text[: len(text) - len(stripped)])
            text = stripped
        for mark in opening:
            out.append("> " if mark[0] == "quote" else _WHATSAPP_MARKERS[mark[0]])
            stack.append(mark)
        out.append(text)
    while stack:
        _whatsapp_close(out, stack.pop())
    if link is not None:
        _hugging(out, _link_suffix(link, wrapped))
    return "".join(out)


def _whatsapp_close(out: list[str], mark: _Mark) -> None:
    if mark[0] == "pre":
        out.append(_WHATSAPP_MARKERS["pre"])  # a code block keeps its spaces
    else:
        _hugging(out, _WHATSAPP_MARKERS[mark[0]])


def _hugging(out: list[str], closing: str) -> None:
    """Append ``closing`` right after the last non-space character written."""
    if not closing:
        return
    trailing = ""
    if out:
        stripped = out[-1].rstrip(" ")
        trailing, out[-1] = out[-1][len(stripped) :], stripped
    out.append(closing)
    out.append(trailing)


def _render_plain(rich: RichText) -> str:
    out: list[str] = []
    link: str | None = None
    wrapped = ""
    for span in rich.spans:
        href = span.style.href
        if href != link:
            if link is not None:
                out.append(_link_suffix(link, wrapped))
            link, wrapped = href, ""
        out.append(span.text)
        wrapped += span.text
    if link is not None:
        out.append(_link_suffix(link, wrapped))
    return "".join(out)


def _link_suffix(href: str, text: str) -> str:
    shown = text.strip()
    if not href or href in (shown, f"mailto:{shown}"):
        return ""
    return f" ({href})"
