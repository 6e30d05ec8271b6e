"""Signed media tokens: what the gateway's /media/{token} URLs carry and check."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.blob_urls import MEDIA_PATH, MediaTokenError, MediaTokens, MediaUrls
from storage.blobs_fs import FilesystemBlobStore

SECRET = b"k" * 32
KEY = "shop/users/424242@telegram/inbox/17/0-photo.jpg"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_grants_its_key_until_it_expires() -> None:
    clock = Clock()
    tokens = MediaTokens(SECRET, clock=clock)
    token = tokens.issue(KEY, expires_in=600, filename="photo.jpg")
    grant = tokens.read(token)
    assert (grant.key, grant.filename, grant.expires) == (KEY, "photo.jpg", 1_800_000_600)
    clock.now += 600
    assert tokens.read(token).key == KEY
    clock.now += 1
    with pytest.raises(MediaTokenError, match="expired"):
        tokens.read(token)


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def test_every_change_to_a_token_is_refused() -> None:
    tokens = MediaTokens(SECRET)
    token = tokens.issue(KEY)
    body, signature = token.split(".")
    forged = [
        _flip(token, 5),  # inside the payload
        _flip(token, len(token) - 3),  # inside the signature
        body + "." + signature[:-1],
        body + "x." + signature,
        body + ".." + signature,
        body,
        "",
        body + "." + signature + "=",
        body.replace("-", "+") + "." + signature if "-" in body else body + "!." + signature,
        MediaTokens(b"o" * 32).issue(KEY),  # another key
    ]
    for bad in forged:
        assert bad != token
        with pytest.raises(MediaTokenError):
            tokens.read(bad)


def test_a_token_for_another_key_cannot_be_made_from_one_for_this_key() -> None:
    tokens = MediaTokens(SECRET)
    a, b = tokens.issue(KEY).split("."), tokens.issue(KEY.replace("17", "18")).split(".")
    with pytest.raises(MediaTokenError):
        tokens.read(f"{b[0]}.{a[1]}")


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MediaTokens(b"short")


async def test_urls_are_the_gateways_when_the_store_does_not_presign(tmp_path: Path) -> None:
    store = await FilesystemBlobStore(tmp_path).open_store()
    tokens = MediaTokens(SECRET)
    relative = MediaUrls(store, tokens)
    url = await relative.url(KEY, filename="photo.jpg")
    assert url.startswith(MEDIA_PATH)
    assert tokens.read(url.removeprefix(MEDIA_PATH)).key == KEY
    absolute = MediaUrls(store, tokens, base_url="https://bots.example.com/")
    assert (await absolute.url(KEY)).startswith("https://bots.example.com/media/")
