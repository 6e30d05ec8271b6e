"""``GET "file"``: a file of the bot's drive as text (its package, then the blob store under
the bot's folder), with General Bots' refusals of paths that could leave it; and the
documents' text fitted page by page into a token allowance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from channels.base import MediaKind
from pipeline.document_context import fit_documents
from pipeline.drive_files import DriveFileError, check_path, read_drive_file
from pipeline.media import StoredMedia
from pipeline.media_content import DocumentPage, ReadDocumentFile, document_suffix
from pipeline.tokens import counter_for_model
from storage.blobs_fs import FilesystemBlobStore
from tests.pipeline.media_samples import encrypted_pdf, pdf


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize(
    "path",
    [
        "",
        "../secret.txt",
        "a/../../b",
        "/etc/passwd",
        "C:/x",
        "a//b",
        "~/x",
        "*.pdf",
        "a?b",
        "shop.gbot/config.csv",  # the bot's keys
    ],
)
def test_paths_that_could_leave_the_drive_are_refused(path: str) -> None:
    with pytest.raises(DriveFileError):
        check_path(path)


async def test_the_package_first_then_the_blob_store(tmp_path: Path) -> None:
    package = tmp_path / "shop.gbai"
    (package / "shop.gbkb").mkdir(parents=True)
    (package / "shop.gbkb" / "faq.pdf").write_bytes(pdf("Returns within 7 days."))
    (package / "prices.txt").write_text("coffee 5")
    (package / "locked.pdf").write_bytes(encrypted_pdf())
    (package / "logo.bin").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "outside.txt").write_text("not yours")
    (package / "link.txt").symlink_to(tmp_path / "outside.txt")
    blobs = await FilesystemBlobStore(tmp_path / "blobs").open_store()
    await blobs.put("shop/reports/today.txt", _chunks(b"12 orders"))
    await blobs.put("other/reports/today.txt", _chunks(b"another bot's"))
    await blobs.put("shop/users/ada@telegram/notes.txt", _chunks(b"Ada's"))
    await blobs.put("shop/users/bob@telegram/notes.txt", _chunks(b"Bob's"))

    async def get(path: str) -> str:
        return await read_drive_file("shop", package, blobs, path, user=("telegram", "ada"))

    assert await get("shop.gbkb/faq.pdf") == "Returns within 7 days."
    assert await get("prices.txt") == "coffee 5"
    assert await get("reports/today.txt") == "12 orders"
    assert await get("users/ada@telegram/notes.txt") == "Ada's"  # the user's own
    for path, message in [
        ("locked.pdf", "encrypted PDF"),
        ("logo.bin", "not UTF-8 text"),
        ("link.txt", "no such file"),  # a link out of the package is no file
        ("missing.txt", "no such file"),
        ("users/bob@telegram/notes.txt", "another user's files"),
    ]:
        with pytest.raises(DriveFileError, match=message):
            await get(path)
    await blobs.close()


def _media(name: str, content_type: str) -> StoredMedia:
    return StoredMedia(0, MediaKind.DOCUMENT, "k", content_type, 1, "0" * 64, filename=name)


@pytest.mark.parametrize(
    ("name", "content_type", "head", "suffix"),
    [
        ("scan.bin", "application/octet-stream", b"%PDF-1.4", ".pdf"),  # the bytes win
        ("report.pdf", "application/pdf", b"hello", None),  # says PDF, is not one
        ("letter.docx", "application/octet-stream", b"PK\x03\x04", ".docx"),
        ("bundle.zip", "application/zip", b"PK\x03\x04", ""),
        ("notes", "text/markdown", b"# hi", ".md"),
        ("data.csv", "text/plain", b"a,b", ".csv"),
        ("blob.txt", "text/plain", b"\x00\x01", ""),
        ("song.mp3", "audio/mpeg", b"ID3", ""),
    ],
)
def test_what_a_document_is_comes_from_its_bytes_first(
    name: str, content_type: str, head: bytes, suffix: str | None
) -> None:
    assert document_suffix(_media(name, content_type), head) == suffix


def test_documents_fit_page_by_page_and_say_what_was_left_out() -> None:
    counter = counter_for_model("gpt-4o")
    pages = tuple(DocumentPage(n, f"Page {n}. " + "word " * 200) for n in range(1, 11))
    manual = ReadDocumentFile(_media("manual.pdf", "application/pdf"), "manual.pdf", pages, 10)
    notes = ReadDocumentFile(
        _media("notes.txt", "text/plain"), "notes.txt", (DocumentPage(None, "hello"),), None
    )
    whole = fit_documents([manual, notes], counter, 100_000)
    assert whole is not None and not whole.truncated and whole.pages_kept == 11
    assert "=== manual.pdf, 10 pages ===" in whole.text and "--- page 10 ---" in whole.text
    cut = fit_documents([manual, notes], counter, 700)
    assert cut is not None and cut.truncated
    assert counter.count(cut.text) <= 700
    assert "--- page 1 ---" in cut.text and "--- page 4 ---" not in cut.text
    assert "to page 10 of manual.pdf did not fit and was left out.]" in cut.text
    assert "[The rest of notes.txt did not fit and was left out.]" in cut.text
    assert fit_documents([], counter, 100) is None
