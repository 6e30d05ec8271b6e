"""Read any supported knowledge-base file into sections, by its extension."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

from pipeline.kb.documents import ReadDocument, Section, UnreadableDocument
from pipeline.kb.docx_reader import read_docx
from pipeline.kb.pdf_reader import read_pdf
from pipeline.kb.text_readers import read_csv, read_html, read_markdown, read_text

_SECTION_READERS: dict[str, Callable[[bytes], list[Section]]] = {
    ".txt": read_text,
    ".text": read_text,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".html": read_html,
    ".htm": read_html,
    ".csv": read_csv,
}

#: The extensions ingestion picks up; other files in a collection are ignored.
SUPPORTED_SUFFIXES = frozenset({*_SECTION_READERS, ".pdf", ".docx"})


def read_document(source: str, data: bytes) -> ReadDocument:
    """Read ``data`` (the bytes of the file named ``source``). CPU-bound: run in an executor."""
    suffix = PurePosixPath(source).suffix.lower()
    if suffix == ".pdf":
        return read_pdf(data, source=source)
    if suffix == ".docx":
        return ReadDocument(read_docx(data, source=source))
    reader = _SECTION_READERS.get(suffix)
    if reader is None:
        raise UnreadableDocument(source, f"unsupported file type {suffix or '(none)'}")
    return ReadDocument(reader(data))
