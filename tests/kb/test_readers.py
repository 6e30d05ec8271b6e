"""Document readers: text with its page and heading kept; unreadable files refused with a reason."""

from __future__ import annotations

import io

import pytest
from docx import Document

from pipeline.kb.documents import Section, UnreadableDocument
from pipeline.kb.readers import read_document
from tests.kb.pdf_writer import encrypt_pdf, make_pdf

MARKDOWN = b"""# Channels
Intro text.

## Telegram
Set the token.

```sh
# not a heading inside a fence
```

### Polling
Use polling locally.

## WhatsApp
Meta Cloud API.
"""


def test_markdown_sections_keep_their_heading_path() -> None:
    sections = read_document("guide.md", MARKDOWN).sections
    assert [s.heading for s in sections] == [
        "Channels",
        "Channels > Telegram",
        "Channels > Telegram > Polling",
        "Channels > WhatsApp",
    ]
    assert "# not a heading inside a fence" in sections[1].text
    assert sections[3].text == "Meta Cloud API."


def test_html_visible_text_under_headings() -> None:
    html = b"""<html><head><title>x</title><style>p{color:red}</style></head><body>
    <h1>Setup</h1><p>First   paragraph.</p><script>alert(1)</script>
    <h2>Twilio &amp; SMS</h2><p>Rows: <b>twilio-account-sid</b>.</p>
    <ul><li>one</li><li>two</li></ul>
    </body></html>"""
    sections = read_document("page.html", html).sections
    assert sections == [
        Section("First paragraph.", "Setup"),
        Section("Rows: twilio-account-sid.\n\none\n\ntwo", "Setup > Twilio & SMS"),
    ]


def test_csv_rows_become_labelled_lines() -> None:
    data = b"name;price\nWidget;10\nGadget;\n"
    (section,) = read_document("products.csv", data).sections
    assert section.text == "name: Widget; price: 10\n\nname: Gadget"


def test_text_latin1_is_read() -> None:
    (section,) = read_document("notes.txt", "Configuração".encode("latin-1")).sections
    assert section.text == "Configuração"


def test_pdf_pages_and_outline_headings() -> None:
    data = make_pdf(
        [["Welcome to the manual."], ["Telegram needs a token."], ["More on tokens."]],
        outline=[("Introduction", 0), ("Telegram", 1)],
    )
    read = read_document("manual.pdf", data)
    assert read.pages == 3
    assert [(s.page, s.heading) for s in read.sections] == [
        (1, "Introduction"),
        (2, "Telegram"),
        (3, "Telegram"),
    ]
    assert "Telegram needs a token." in read.sections[1].text


def test_pdf_with_an_empty_user_password_is_read() -> None:
    data = encrypt_pdf(make_pdf([["Open to all."]]), "")
    assert "Open to all." in read_document("open.pdf", data).sections[0].text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encrypt_pdf(make_pdf([["Secret."]]), "s3cret"), "encrypted PDF"),
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", "not a readable PDF"),
        (b"definitely not a pdf", "not a readable PDF"),
    ],
    ids=["encrypted", "truncated", "garbage"],
)
def test_unreadable_pdfs_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableDocument) as caught:
        read_document("bad.pdf", data)
    assert caught.value.source == "bad.pdf" and reason in caught.value.reason


def test_docx_headings_paragraphs_and_tables() -> None:
    document = Document()
    document.add_heading("Providers", level=1)
    document.add_paragraph("Set llm-provider.")
    document.add_heading("OpenAI", level=2)
    document.add_paragraph("Use llm-key.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "llm-model"
    table.rows[0].cells[1].text = "gpt-4o"
    out = io.BytesIO()
    document.save(out)
    sections = read_document("providers.docx", out.getvalue()).sections
    assert sections == [
        Section("Set llm-provider.", "Providers"),
        Section("Use llm-key.\n\nllm-model | gpt-4o", "Providers > OpenAI"),
    ]


def test_corrupt_docx_and_unknown_types_are_refused() -> None:
    with pytest.raises(UnreadableDocument, match="not a readable Word document"):
        read_document("broken.docx", b"PK\x03\x04 broken")
    with pytest.raises(UnreadableDocument, match=r"unsupported file type \.exe"):
        read_document("tool.exe", b"MZ")
