"""Blob keys in General Bots' drive layout: scoped by bot and user, safe, one per file."""

from __future__ import annotations

import pytest

from storage.blob_keys import file_name, inbound_key, segment, user_prefix
from storage.blobs_base import check_key


def test_a_users_files_are_under_the_bots_users_folder() -> None:
    key = inbound_key(
        "shop",
        "telegram",
        "424242",
        "424242:17",
        0,
        kind="audio",
        filename=None,
        content_type="audio/ogg",
    )
    assert key == "shop/users/424242@telegram/inbox/424242:17/0-audio.ogg"


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("Invoice March.PDF", "application/pdf", "Invoice_March.pdf"),
        ("../../etc/passwd", None, "passwd"),
        ("C:\\Users\\ada\\photo.jpeg", "image/jpeg", "photo.jpeg"),
        (".bashrc", None, "bashrc"),
        (None, "image/jpeg", "image.jpg"),
        (None, "audio/ogg; codecs=opus", "image.ogg"),
        (None, None, "image"),
        ("résumé.docx", None, "r_sum.docx"),
    ],
)
def test_file_names_are_made_safe_and_keep_their_extension(
    filename: str | None, content_type: str | None, expected: str
) -> None:
    assert file_name(filename, kind="image", content_type=content_type) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("shop", "telegram", "ada"), ("shop", "whatsapp", "ada")),  # another channel
        (("shop", "web", "ada"), ("bank", "web", "ada")),  # another bot
        (("shop", "web", "a/b"), ("shop", "web", "a_b")),
        (("shop", "web", "a@web"), ("shop", "web", "a")),
        (("shop", "web", "ada"), ("shop", "web", "Ada")),
    ],
)
def test_different_users_never_share_a_folder(
    a: tuple[str, str, str], b: tuple[str, str, str]
) -> None:
    assert user_prefix(*a) != user_prefix(*b)


@pytest.mark.parametrize("hostile", ["..", ".", "../../x", "a/../../b", "", "%2e%2e", "\x00"])
def test_no_id_leaves_its_folder(hostile: str) -> None:
    key = inbound_key(
        hostile, "web", hostile, hostile, 3, kind="document", filename=hostile, content_type=None
    )
    check_key(key)  # no dot segments, no empty ones
    assert key.count("/") == 5


def test_long_ids_are_hashed_within_a_segments_limit_and_stay_apart() -> None:
    first, second = "m" * 200 + "1", "m" * 200 + "2"
    assert len(segment(first)) <= 120
    assert segment(first) != segment(second)
    # A short id cannot pose as a hashed one: a literal "~" is always encoded.
    assert segment(segment(first)) != segment(first)
