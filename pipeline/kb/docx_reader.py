"""Word documents through ``python-docx``: a section per heading, tables as rows."""

from __future__ import annotations

import io
import zipfile

from docx import Document
from docx.table import Table
from docx.text.paragraph import Paragraph

from pipeline.kb.documents import Section, UnreadableDocument


def read_docx(data: bytes, *, source: str = "document.docx") -> list[Section]:
    """The paragraphs and tables of a ``.docx`` in order, under their heading paths."""
    try:
        document = Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise UnreadableDocument(source, f"not a readable Word document ({e})") from e
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    blocks: list[str] = []

    def flush() -> None:
        text = "\n\n".join(b for b in blocks if b.strip())
        if text:
            sections.append(Section(text, " > ".join(t for _, t in path)))
        blocks.clear()

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells = [c.text.strip() for c in row.cells]
                blocks.append(" | ".join(c for c in cells if c))
            continue
        assert isinstance(item, Paragraph)
        level = _heading_level(item)
        if level is None:
            blocks.append(item.text)
            continue
        flush()
        while path and path[-1][0] >= level:
            path.pop()
        if item.text.strip():
            path.append((level, item.text.strip()))
    flush()
    return sections


def _heading_level(paragraph: Paragraph) -> int | None:
    name = paragraph.style.name if paragraph.style is not None and paragraph.style.name else ""
    if name == "Title":
        return 0
    if name.startswith("Heading"):
        digits = name.removeprefix("Heading").strip()
        return int(digits) if digits.isdigit() else 1
    return None
