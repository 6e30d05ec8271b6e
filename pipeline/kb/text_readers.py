"""Readers for text documents: plain text, markdown, HTML and CSV."""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser

from pipeline.kb.documents import Section

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Latin-1, which reads any byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_text(data: bytes) -> list[Section]:
    """A plain-text file: one section, paragraphs kept."""
    return [Section(decode(data))]


def read_markdown(data: bytes) -> list[Section]:
    """A markdown file: a section per heading, each keeping the heading path above it."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(lines).strip()
        if text:
            sections.append(Section(text, " > ".join(title for _, title in path)))
        lines.clear()

    for line in decode(data).splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _MD_HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        flush()
        level, title = len(match.group(1)), match.group(2)
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
    flush()
    return sections


_BLOCKS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article",
    "blockquote", "pre", "dd", "dt", "header", "footer", "main",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HIDDEN = {"script", "style", "noscript", "template", "head", "svg"}


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._text: list[str] = []
        self._heading: list[str] | None = None
        self._heading_level = 0
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _HEADINGS:
            self._flush()
            self._heading, self._heading_level = [], _HEADINGS[tag]
        elif tag in _BLOCKS:
            self._text.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _HEADINGS and self._heading is not None:
            title = " ".join("".join(self._heading).split())
            while self._path and self._path[-1][0] >= self._heading_level:
                self._path.pop()
            if title:
                self._path.append((self._heading_level, title))
            self._heading = None
        elif tag in _BLOCKS:
            self._text.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        (self._heading if self._heading is not None else self._text).append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        raw = "".join(self._text)
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", raw)]
        text = "\n\n".join(p for p in paragraphs if p)
        if text:
            self.sections.append(Section(text, " > ".join(t for _, t in self._path)))
        self._text.clear()


def read_html(data: bytes) -> list[Section]:
    """An HTML page's visible text, a section per heading (scripts and styles dropped)."""
    return read_html_text(decode(data))


def read_html_text(text: str) -> list[Section]:
    """:func:`read_html` of a page already decoded (a web page, with its charset)."""
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    return parser.sections


def read_csv(data: bytes, *, rows_per_section: int = 20) -> list[Section]:
    """A CSV table: each row as ``column: value; …`` lines, a section per block of rows."""
    text = decode(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    lines = []
    for row in body:
        pairs = zip(header, row, strict=False)
        cells = [f"{h.strip()}: {v.strip()}" for h, v in pairs if v.strip()]
        if cells:
            lines.append("; ".join(cells))
    return [
        Section("\n\n".join(lines[i : i + rows_per_section]))
        for i in range(0, len(lines), rows_per_section)
    ]
