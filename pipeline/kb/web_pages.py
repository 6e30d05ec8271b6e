"""A fetched web page read for the knowledge base: its text sections, links and directives.

HTML is read by the knowledge base's own HTML reader (a section per heading, scripts and
styles dropped), with the page's ``<title>`` as the heading of text above its first heading;
plain text, markdown, PDF and ``.docx`` by theirs. Links come from ``<a href>`` and
``<area href>`` (``rel="nofollow"`` ones left out), resolved against ``<base href>``; the
page's ``<link rel="canonical">`` and its robots directives are read too. CPU-bound: run it
in an executor.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser

from pipeline.kb.documents import ReadDocument, UnreadableDocument
from pipeline.kb.docx_reader import read_docx
from pipeline.kb.pdf_reader import read_pdf
from pipeline.kb.robots import ROBOTS_TOKEN, Directives, directives
from pipeline.kb.text_readers import decode, read_html_text, read_markdown, read_text
from pipeline.kb.web_urls import normalize_url

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
#: The content types the crawler reads; other responses are not downloaded.
PAGE_TYPES = HTML_TYPES | {
    "text/plain",
    "text/markdown",
    "text/x-markdown",
    "application/pdf",
    DOCX_TYPE,
}
#: Types whose bytes are useless cut short: a page of these over the size limit is skipped.
WHOLE_TYPES = frozenset({"application/pdf", DOCX_TYPE})


@dataclass(frozen=True, slots=True)
class WebPage:
    """What the crawler and the index need of one page."""

    document: ReadDocument
    digest: str  # sha256 of the text read: an unchanged page is not indexed again
    title: str = ""
    links: tuple[str, ...] = ()  # normalized, in page order, without duplicates
    canonical: str | None = None
    directives: Directives = field(default_factory=Directives)


def read_page(
    url: str, content_type: str, body: bytes, charset: str | None, header_directives: str = ""
) -> WebPage:
    """Read a page fetched from ``url``; :class:`UnreadableDocument` when it cannot be."""
    said = directives(header_directives)
    if content_type in HTML_TYPES:
        return _read_html(url, _decode(body, charset), said)
    if content_type == "application/pdf":
        document = read_pdf(body, source=url)
    elif content_type == DOCX_TYPE:
        document = ReadDocument(read_docx(body, source=url))
    elif content_type in ("text/markdown", "text/x-markdown"):
        document = ReadDocument(read_markdown(body))
    elif content_type == "text/plain":
        document = ReadDocument(read_text(body))
    else:
        raise UnreadableDocument(url, f"unsupported content type {content_type or '(none)'}")
    return WebPage(document, _digest(document), directives=said)


def _read_html(url: str, text: str, said: Directives) -> WebPage:
    meta = _PageMeta()
    meta.feed(text)
    meta.close()
    base = normalize_url(meta.base, url) if meta.base else url
    links: dict[str, None] = {}
    for href in meta.links:
        link = normalize_url(href, base or url)
        if link is not None and link != url:
            links[link] = None
    title = " ".join(meta.title.split())
    sections = read_html_text(text)
    if title:
        sections = [s if s.heading else replace(s, heading=title) for s in sections]
    document = ReadDocument(sections)
    canonical = normalize_url(meta.canonical, base or url) if meta.canonical else None
    return WebPage(
        document,
        _digest(document),
        title=title,
        links=tuple(links),
        canonical=canonical,
        directives=said | meta.directives,
    )


def _decode(body: bytes, charset: str | None) -> str:
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            return decode(body)
        return body.decode(charset, errors="replace")
    return decode(body)


def _digest(document: ReadDocument) -> str:
    h = hashlib.sha256()
    for section in document.sections:
        h.update(f"{section.page}\x00{section.heading}\x00{section.text}\x01".encode())
    return h.hexdigest()


class _PageMeta(HTMLParser):
    """The parts of a page that are not its text: title, base, canonical, robots, links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.base: str | None = None
        self.canonical: str | None = None
        self.directives = Directives()
        self.links: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "title" and not self.title:
            self._in_title = True
        elif tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag == "meta" and values.get("name", "").lower() in ("robots", ROBOTS_TOKEN):
            self.directives = self.directives | directives(values.get("content", ""))
        elif tag == "link" and "canonical" in values.get("rel", "").lower().split():
            self.canonical = self.canonical or values.get("href") or None
        elif tag in ("a", "area") and values.get("href"):
            if "nofollow" not in values.get("rel", "").lower().split():
                self.links.append(values["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
