"""PDF documents through ``pypdf``: a section per page, headed by the outline entry it falls under.

An encrypted PDF that opens with no password is read; one that needs a
password, or one ``pypdf`` cannot parse, raises :class:`UnreadableDocument`
with the reason. CPU-bound: ingestion runs it in an executor.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from pipeline.kb.documents import ReadDocument, Section, UnreadableDocument

log = logging.getLogger(__name__)


def read_pdf(data: bytes, *, source: str = "document.pdf") -> ReadDocument:
    """The text of every page of a PDF, page numbers from 1."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(source, "encrypted PDF: it needs a password")
        pages = reader.pages
        count = len(pages)
        headings = _outline_headings(reader)
    except UnreadableDocument:
        raise
    except PdfReadError as e:
        raise UnreadableDocument(source, f"not a readable PDF ({e})") from e
    except Exception as e:  # pypdf raises many kinds on damaged files
        raise UnreadableDocument(source, f"not a readable PDF ({type(e).__name__}: {e})") from e
    sections: list[Section] = []
    heading = ""
    for number in range(count):
        heading = headings.get(number, heading)
        try:
            text = pages[number].extract_text() or ""
        except Exception as e:  # a damaged page costs that page, not the document
            log.warning("kb: %s page %d unreadable, skipped: %s", source, number + 1, e)
            continue
        if text.strip():
            sections.append(Section(text, heading, number + 1))
    return ReadDocument(sections, pages=count)


def _outline_headings(reader: PdfReader) -> dict[int, str]:
    """The outline's titles by the page index they start on (the deepest wins)."""
    found: dict[int, str] = {}

    def walk(items: list[Any], parents: tuple[str, ...]) -> None:
        last: tuple[str, ...] = parents
        for item in items:
            if isinstance(item, list):
                walk(item, last)
                continue
            title = str(getattr(item, "title", "") or "").strip()
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # a broken destination only loses its heading
                continue
            last = (*parents, title) if title else parents
            if page is not None and page >= 0 and title:
                found[page] = " > ".join(last)

    try:
        walk(list(reader.outline), ())
    except Exception as e:  # the outline is optional; the text still counts
        log.debug("kb: PDF outline unreadable: %s", e)
    return found
