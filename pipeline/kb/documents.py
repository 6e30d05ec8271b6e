"""What a document reader produces: text sections that keep their page and heading."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import PipelineError


class UnreadableDocument(PipelineError):
    """A file the knowledge base cannot read (corrupt, encrypted, unknown kind).

    Ingestion logs ``reason``, records it on the file's row and goes on.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[UnreadableDocument], tuple[str, str]]:
        # Raised in a parser process (pipeline.kb.parser_processes), it is pickled back.
        return (type(self), (self.source, self.reason))


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading on one page (``page`` from 1; None when unpaged).

    ``heading`` is the path of headings above the text, ``"Setup > Telegram"``.
    """

    text: str
    heading: str = ""
    page: int | None = None


@dataclass(frozen=True, slots=True)
class ReadDocument:
    """A file read into sections; ``pages`` counts a paged document's pages."""

    sections: list[Section]
    pages: int | None = None
