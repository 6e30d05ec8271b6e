"""The parser processes: a document that kills its parser is unreadable, the next is read."""

from __future__ import annotations

import os

import pytest

from pipeline.kb.documents import UnreadableDocument
from pipeline.kb.parser_processes import ParserProcesses, parse_in_process
from pipeline.kb.readers import read_document
from tests.kb.pdf_writer import make_pdf


def test_pdf_and_docx_are_the_kinds_parsed_in_a_process() -> None:
    assert parse_in_process("Manual.PDF") and parse_in_process("notes.docx")
    assert not parse_in_process("faq.md") and not parse_in_process("page.html")


async def test_a_document_that_kills_its_parser_is_unreadable_and_the_next_is_read() -> None:
    parsers = ParserProcesses(workers=1)
    try:
        with pytest.raises(UnreadableDocument, match="parser process died") as raised:
            await parsers.run("bomb.pdf", os._exit, 9)
        assert raised.value.source == "bomb.pdf"
        read = await parsers.run(
            "ok.pdf", read_document, "ok.pdf", make_pdf([["Tokens and channels."]])
        )
        assert read.pages == 1 and "Tokens and channels." in read.sections[0].text
    finally:
        parsers.close()


async def test_a_reader_error_comes_back_with_its_source_and_reason() -> None:
    parsers = ParserProcesses(workers=1)
    try:
        with pytest.raises(UnreadableDocument) as raised:
            await parsers.run("broken.pdf", read_document, "broken.pdf", b"%PDF-1.4 not really")
        assert raised.value.source == "broken.pdf" and raised.value.reason
    finally:
        parsers.close()
