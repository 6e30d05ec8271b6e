"""Users' files end to end: a real gateway on a real PostgreSQL, the real SDKs and fake
Telegram, Graph and Twilio APIs. A message with media comes in through its webhook, its
turn fetches each file once from the provider, keeps it in the blob store, notes it on
the history row, and the history API hands out links that ``GET /media/{token}`` serves."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from config.settings import S3Settings
from gateway.app import create_app
from gateway.keys import MEDIA_URLS, STORES
from storage.blobs_s3 import S3BlobStore
from storage.services import Stores
from tests.channels.fake_graph import FakeGraphApi
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.fake_twilio import ACCOUNT_SID, FakeTwilioApi
from tests.channels.gateway_harness import (
    TWILIO_FROM,
    WA_USER,
    Client,
    channel_rows,
    gateway_settings,
    tg_post,
    twilio_post,
    wa_media,
    wa_notification,
    wa_post,
    write_bot,
)
from tests.databases import database_fixture
from tests.fake_servers import fake_server
from tests.gateway.test_openapi import check
from tests.storage.seaweed import S3Server

ADMIN_TOKEN = "gateway-media-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHAT = 515151
MiB = 1024 * 1024

telegram = fake_server(FakeBotApi)
graph = fake_server(FakeGraphApi)
twilio = fake_server(FakeTwilioApi)
database = database_fixture("botserver_media")


@pytest.fixture
def bots(tmp_path: Path, telegram: FakeBotApi, graph: FakeGraphApi, twilio: FakeTwilioApi) -> Path:
    folder = tmp_path / "bots"
    write_bot(folder, "relay", channel_rows(telegram, graph, twilio))
    return folder


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str, bots: Path, tmp_path: Path, aiohttp_client, monkeypatch: pytest.MonkeyPatch
) -> Client:
    monkeypatch.setenv("BOTSERVER_ADMIN_TOKEN", ADMIN_TOKEN)
    return await aiohttp_client(create_app(gateway_settings(database, bots, tmp_path / "data")))


def tg_photo(update_id: int, file_id: str, size: int, caption: str = "") -> bytes:
    message: dict[str, Any] = {
        "message_id": update_id,
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ada"},
        "chat": {"id": CHAT, "first_name": "Ada", "type": "private"},
        "date": int(time.time()),
        "photo": [
            {"file_id": file_id + "-small", "file_unique_id": "s", "width": 90, "height": 60},
            {
                "file_id": file_id,
                "file_unique_id": "b",
                "width": 1280,
                "height": 853,
                "file_size": size,
            },
        ],
    }
    if caption:
        message["caption"] = caption
    return json.dumps({"update_id": update_id, "message": message}).encode()


async def history(client: Client, channel: str, user: str) -> list[dict[str, Any]]:
    """The user's history through the API (empty until the first turn committed)."""
    stores: Stores = client.server.app[STORES]
    session = await stores.conversations.find_active(bot_id="relay", channel=channel, user_id=user)
    if session is None:
        return []
    resp = await client.get(f"/api/v1/bots/relay/sessions/{session.id}/messages", headers=ADMIN)
    assert resp.status == 200
    body = await resp.json()
    check("/components/schemas/History", body)
    messages: list[dict[str, Any]] = body["messages"]
    return messages


async def user_files(client: Client, channel: str, user: str) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]]:
        for message in await history(client, channel, user):
            if message["role"] == "user" and message.get("attachments"):
                return list(message["attachments"])
        return []

    deadline = time.monotonic() + 10
    while not (files := await found()):
        assert time.monotonic() < deadline, "no attachment in the history"
        await asyncio.sleep(0.05)
    return files


async def test_a_telegram_photo_is_stored_once_and_served_by_its_link(
    client: Client, telegram: FakeBotApi
) -> None:
    data = os.urandom(2 * MiB + 5)
    path = telegram.add_file("AgACAgQ-photo", data, file_path="photos/file_42.jpg")
    assert await tg_post(client, tg_photo(801, "AgACAgQ-photo", len(data), "my receipt")) == 200
    [photo] = await user_files(client, "telegram", str(CHAT))
    assert (photo["kind"], photo["content_type"], photo["size"], photo["caption"]) == (
        "image",
        "image/jpeg",
        len(data),
        "my receipt",
    )
    assert photo["url"].startswith("/media/")  # no BOTSERVER_PUBLIC_URL: a path
    assert telegram.downloads == {path: 1}
    resp = await client.get(photo["url"])
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["Content-Disposition"].startswith("inline; ")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in resp.headers["Content-Security-Policy"]
    # The file is on disk under the bot's and the user's folders.
    stores: Stores = client.server.app[STORES]
    [record] = await stores.media.of_user("relay", "telegram", str(CHAT))
    assert record.key.startswith(f"relay/users/{CHAT}@telegram/inbox/")
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    # Delivered again (Telegram retries a webhook): no second turn, no second download.
    assert await tg_post(client, tg_photo(801, "AgACAgQ-photo", len(data), "my receipt")) == 200
    await asyncio.sleep(0.3)
    assert telegram.downloads == {path: 1}


async def test_media_links_refuse_every_change_and_serve_ranges(
    client: Client, telegram: FakeBotApi
) -> None:
    telegram.add_file("AgAC-range", b"0123456789", file_path="photos/r.jpg")
    assert await tg_post(client, tg_photo(802, "AgAC-range", 10)) == 200
    [photo] = await user_files(client, "telegram", str(CHAT))
    url = photo["url"]
    resp = await client.get(url, headers={"Range": "bytes=2-5"})
    assert (resp.status, await resp.read()) == (206, b"2345")
    assert resp.headers["Content-Range"] == "bytes 2-5/10"
    resp = await client.get(url, headers={"Range": "bytes=-3"})
    assert (resp.status, await resp.read()) == (206, b"789")
    resp = await client.get(url, headers={"Range": "bytes=10-"})
    assert (resp.status, resp.headers["Content-Range"]) == (416, "bytes */10")
    resp = await client.head(url)
    assert (resp.status, resp.headers["Content-Length"]) == (200, "10")
    token = url.removeprefix("/media/")
    body, signature = token.split(".")
    tampered = [
        f"{body[:-2]}{'AB' if body[-2:] != 'AB' else 'CD'}.{signature}",
        f"{body}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        f"{body}.",
        "nothing-like-a-token",
    ]
    for bad in tampered:
        resp = await client.get(f"/media/{bad}")
        assert resp.status == 403, bad
        assert (await resp.json())["error"] == "forbidden"
    urls = client.server.app[MEDIA_URLS]
    key = urls.tokens.read(token).key
    expired = urls.tokens.issue(key, expires_in=1)
    await asyncio.sleep(2.1)
    resp = await client.get(f"/media/{expired}")
    assert resp.status == 403
    stores: Stores = client.server.app[STORES]
    await stores.blobs.delete(key)
    resp = await client.get(url)
    assert (resp.status, (await resp.json())["error"]) == (404, "not_found")


async def test_a_whatsapp_voice_note_and_document_are_kept(
    client: Client, graph: FakeGraphApi
) -> None:
    graph.add_media("9001", b"OggS voice", "audio/ogg")
    graph.add_media("9002", b"<html><script>alert(1)</script>", "text/html")
    messages = [
        wa_media("wamid.media1", "voice", {"id": "9001", "mime_type": "audio/ogg; codecs=opus"}),
    ]
    assert await wa_post(client, wa_notification(messages=messages)) == 200
    [note] = await user_files(client, "whatsapp", WA_USER)
    assert (note["kind"], note["content_type"], note["size"]) == ("audio", "audio/ogg", 10)
    document = wa_media(
        "wamid.media2",
        "document",
        {"id": "9002", "mime_type": "text/html", "filename": "page.html"},
    )
    assert await wa_post(client, wa_notification(messages=[document])) == 200

    async def page() -> dict[str, Any] | None:
        for message in await history(client, "whatsapp", WA_USER):
            for file in message.get("attachments", []):
                if file.get("filename") == "page.html":
                    return dict(file)
        return None

    deadline = time.monotonic() + 10
    while (found := await page()) is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    resp = await client.get(found["url"])
    # What a user sent is never run by a browser from our origin.
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="page.html"')
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert graph.downloads == {"9001": 1, "9002": 1}


async def test_a_twilio_message_whose_second_file_failed_once_is_retried_without_refetching(
    client: Client, twilio: FakeTwilioApi
) -> None:
    first = twilio.add_media("MM" + "a" * 32, b"\x89PNG first", "image/png")
    second = twilio.add_media("MM" + "a" * 32, b"%PDF second", "application/pdf")
    twilio.fail_media_next(second, 503)  # the turn fails once, and is run again
    form = {
        "MessageSid": "MM" + "a" * 32,
        "AccountSid": ACCOUNT_SID,
        "From": "whatsapp:+14155550100",
        "To": f"whatsapp:{TWILIO_FROM}",
        "Body": "two files",
        "NumMedia": "2",
        "MediaUrl0": first,
        "MediaContentType0": "image/png",
        "MediaUrl1": second,
        "MediaContentType1": "application/pdf",
    }
    resp = await twilio_post(client, form)
    assert resp.status == 200
    files = await user_files(client, "twilio-whatsapp", "+14155550100")
    assert [(f["kind"], f["size"]) for f in files] == [("image", 10), ("document", 11)]
    first_sid, second_sid = (urlsplit(u).path.rsplit("/", 1)[1] for u in (first, second))
    assert twilio.media_requests == {first_sid: 1, second_sid: 2}
    assert twilio.cdn_authorizations == []
    stores: Stores = client.server.app[STORES]
    async with stores.pool.acquire() as conn:
        attempts = await conn.fetchval(
            "SELECT attempts FROM inbox WHERE channel = 'twilio-whatsapp' AND external_id = $1",
            form["MessageSid"],
        )
    assert attempts == 2


# -- on S3 -----------------------------------------------------------------------------------


@pytest.fixture
def s3_settings(s3_server: S3Server) -> S3Settings:
    return S3Settings(
        bucket="gateway-media",
        access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key,
        endpoint_url=s3_server.endpoint_url,
    )


async def test_on_s3_the_gateway_keeps_files_in_the_bucket_and_serves_them(  # type: ignore[no-untyped-def]
    database: str,
    bots: Path,
    tmp_path: Path,
    aiohttp_client,
    monkeypatch: pytest.MonkeyPatch,
    telegram: FakeBotApi,
    s3_settings: S3Settings,
) -> None:
    monkeypatch.setenv("BOTSERVER_ADMIN_TOKEN", ADMIN_TOKEN)
    app = create_app(gateway_settings(database, bots, tmp_path / "data", s3=s3_settings))
    client = await aiohttp_client(app)
    stores: Stores = app[STORES]
    assert isinstance(stores.blobs, S3BlobStore)
    assert await stores.ping() == {"postgres": True, "s3": True}
    data = os.urandom(6 * MiB)  # a multipart upload
    telegram.add_file("AgAC-s3", data, file_path="photos/s3.jpg")
    assert await tg_post(client, tg_photo(901, "AgAC-s3", len(data))) == 200
    [photo] = await user_files(client, "telegram", str(CHAT))
    assert photo["url"].startswith("/media/")  # S3 endpoint of our own: the gateway serves
    resp = await client.get(photo["url"])
    assert hashlib.sha256(await resp.read()).digest() == hashlib.sha256(data).digest()
    assert not (tmp_path / "data" / "blobs").exists()  # nothing went to the disk


async def test_with_a_public_s3_endpoint_the_links_are_presigned(  # type: ignore[no-untyped-def]
    database: str,
    bots: Path,
    tmp_path: Path,
    aiohttp_client,
    monkeypatch: pytest.MonkeyPatch,
    telegram: FakeBotApi,
    s3_settings: S3Settings,
    s3_server: S3Server,
) -> None:
    monkeypatch.setenv("BOTSERVER_ADMIN_TOKEN", ADMIN_TOKEN)
    public = S3Settings(
        bucket=s3_settings.bucket,
        access_key_id=s3_settings.access_key_id,
        secret_access_key=s3_settings.secret_access_key,
        endpoint_url=s3_settings.endpoint_url,
        public_url=s3_server.endpoint_url,
    )
    client = await aiohttp_client(
        create_app(gateway_settings(database, bots, tmp_path / "data", s3=public))
    )
    telegram.add_file("AgAC-pre", b"presigned bytes", file_path="photos/p.jpg")
    assert await tg_post(client, tg_photo(902, "AgAC-pre", 15)) == 200
    [photo] = await user_files(client, "telegram", str(CHAT))
    assert photo["url"].startswith(s3_server.endpoint_url)
    assert "X-Amz-Signature=" in photo["url"]
    async with aiohttp.ClientSession() as http, http.get(photo["url"]) as resp:
        assert (resp.status, await resp.read()) == (200, b"presigned bytes")
        assert resp.headers["Content-Type"] == "image/jpeg"


async def test_s3_asked_for_with_refused_credentials_stops_the_gateway(  # type: ignore[no-untyped-def]
    database: str, bots: Path, tmp_path: Path, aiohttp_client, s3_settings: S3Settings
) -> None:
    wrong = S3Settings(
        bucket=s3_settings.bucket,
        access_key_id=s3_settings.access_key_id,
        secret_access_key="not-the-secret",
        endpoint_url=s3_settings.endpoint_url,
    )
    with pytest.raises(Exception, match="S3 refused"):
        await aiohttp_client(
            create_app(gateway_settings(database, bots, tmp_path / "data", s3=wrong))
        )
    assert not (tmp_path / "data" / "blobs").exists()  # and no quiet fallback to the disk
