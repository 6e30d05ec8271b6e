"""What a dialog may name as a file to send (pipeline.outbound_files), on a real blob store:
the bot's drive (never outside it), a stored file of the bot's (never another bot's), a URL
(never a private address unless the bot allows it)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from channels.base import MediaKind
from config.packages import load_package
from pipeline.bots import Bot, build_bot
from pipeline.outbound_files import FileNotSendable, OutboundFiles
from pipeline.outbound_http import OutboundHttp
from storage.blob_urls import MediaTokens, MediaUrls
from storage.blobs_base import BlobError
from storage.blobs_fs import FilesystemBlobStore
from tests.channels.gateway_harness import write_bot

MENU = b"%PDF-1.4 the menu"


def bot(folder: Path, name: str, **config: str) -> Bot:
    write_bot(folder, name, config, 'TALK "hi"\n')
    drive = folder / f"{name}.gbai" / f"{name}.gbdrive"
    (drive / "docs").mkdir(parents=True)
    (drive / "docs" / "menu.pdf").write_bytes(MENU)
    (folder / f"{name}.gbai" / f"{name}.gbot" / "secret.txt").write_text("not for users")
    return build_bot(load_package(folder / f"{name}.gbai"))


@pytest.fixture
async def http() -> AsyncIterator[OutboundHttp]:
    client = await OutboundHttp().open()
    yield client
    await client.close()


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async def song(request: web.Request) -> web.Response:
        return web.Response(body=b"ID3" + b"\x01" * 3000, content_type="audio/mpeg")

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/song", song)
    app.router.add_get("/gone.pdf", gone)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def files(tmp_path: Path, http: OutboundHttp) -> OutboundFiles:
    blobs = await FilesystemBlobStore(tmp_path / "blobs").open_store()
    return OutboundFiles(blobs, MediaUrls(blobs, MediaTokens(os.urandom(32))), http)


async def test_a_drive_file_is_copied_once_and_attached(
    tmp_path: Path, files: OutboundFiles
) -> None:
    shop = bot(tmp_path / "bots", "shop")
    one = await files.attachment(shop, "telegram", "42", "docs/menu.pdf", "Menu")
    assert (one.key, one.kind, one.content_type, one.size, one.caption) == (
        "shop/shop.gbdrive/docs/menu.pdf",
        MediaKind.DOCUMENT,
        "application/pdf",
        len(MENU),
        "Menu",
    )
    before = await files.blobs.stat("shop/shop.gbdrive/docs/menu.pdf")
    again = await files.attachment(shop, "telegram", "42", "shop.gbdrive/docs/menu.pdf")
    assert again.key == one.key
    assert await files.blobs.stat(one.key) == before  # unchanged on disk: not copied again


@pytest.mark.parametrize(
    "name",
    [
        "../shop.gbot/secret.txt",
        "docs/../../shop.gbot/secret.txt",
        "/etc/passwd",
        ".hidden",
        "nope.pdf",
        "",
    ],
)
async def test_nothing_outside_the_drive_can_be_sent(
    tmp_path: Path, files: OutboundFiles, name: str
) -> None:
    shop = bot(tmp_path / "bots", "shop")
    with pytest.raises(FileNotSendable):
        await files.attachment(shop, "telegram", "42", name)


async def test_a_link_to_a_stored_file_is_that_file_and_only_the_bots_own(
    tmp_path: Path, files: OutboundFiles
) -> None:
    shop, other = bot(tmp_path / "bots", "shop"), bot(tmp_path / "bots", "other")
    stored = await files.attachment(shop, "telegram", "42", "docs/menu.pdf")
    assert stored.key is not None
    url = "https://bots.example.com" + await files.urls.url(stored.key, filename="menu.pdf")  # type: ignore[union-attr]
    same = await files.attachment(shop, "whatsapp", "15550001", url)
    assert same.key == stored.key
    with pytest.raises(FileNotSendable, match="is not a file of bot 'other'"):
        await files.attachment(other, "whatsapp", "15550001", url)
    with pytest.raises(FileNotSendable, match="signature"):
        await files.attachment(shop, "whatsapp", "15550001", url[:-3] + "AAA")


async def test_a_url_is_fetched_into_the_users_folder(
    tmp_path: Path, files: OutboundFiles, site: str
) -> None:
    shop = bot(tmp_path / "bots", "shop", **{"http-allow-private": "true"})
    song = await files.attachment(shop, "whatsapp", "15550001", f"{site}/song")
    assert song.key is not None and song.key.startswith("shop/users/15550001@whatsapp/outbox/")
    assert song.key.endswith("/song.mp3") and song.kind is MediaKind.AUDIO
    with pytest.raises(FileNotSendable, match="404"):
        await files.attachment(shop, "whatsapp", "15550001", f"{site}/gone.pdf")


async def test_a_private_address_is_refused_unless_the_bot_allows_it(
    tmp_path: Path, files: OutboundFiles, site: str
) -> None:
    shop = bot(tmp_path / "bots", "shop")
    with pytest.raises(FileNotSendable, match=r"private|refused|not allowed"):
        await files.attachment(shop, "whatsapp", "15550001", f"{site}/song")


async def test_a_file_over_the_limit_is_refused(
    tmp_path: Path, http: OutboundHttp, site: str
) -> None:
    blobs = await FilesystemBlobStore(tmp_path / "blobs").open_store()
    small = OutboundFiles(blobs, None, http, max_bytes=10)
    shop = bot(tmp_path / "bots", "shop", **{"http-allow-private": "true"})
    with pytest.raises(FileNotSendable, match="limit"):
        await small.attachment(shop, "whatsapp", "1", f"{site}/song")
    with pytest.raises(FileNotSendable, match="limit"):
        await small.attachment(shop, "whatsapp", "1", "docs/menu.pdf")


async def test_a_store_that_fails_is_a_failure_of_ours_not_the_dialogs(tmp_path: Path) -> None:
    broken = OutboundFiles(FilesystemBlobStore(tmp_path / "never-opened"))  # no folders
    shop = bot(tmp_path / "bots", "shop")
    with pytest.raises(BlobError):
        await broken.attachment(shop, "telegram", "42", "docs/menu.pdf")
