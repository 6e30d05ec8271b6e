"""The blob contract, once, over every backend: the filesystem and a real S3 server.

S3 is SeaweedFS (``weed server -s3``) with one identity, so SigV4 is checked on every
request: the presigned URLs below are fetched by a plain HTTP client, and a tampered one
is refused by the server itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from storage.blobs_base import (
    BlobError,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    ByteRange,
    InvalidBlobKey,
    check_key,
)
from storage.blobs_fs import FilesystemBlobStore
from storage.blobs_s3 import PART_SIZE, S3BlobStore, S3Config
from tests.storage.seaweed import S3Server

MiB = 1024 * 1024


def s3_config(server: S3Server, *, bucket: str = "botserver-test", **more: str) -> S3Config:
    return S3Config(
        bucket=bucket,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        endpoint_url=server.endpoint_url,
        **more,
    )


@pytest.fixture(params=["filesystem", "s3"])
def blob_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Path | S3Config:
    """Where the store under test keeps its objects: a folder, or the S3 server's bucket."""
    if request.param == "filesystem":
        return tmp_path / "blobs"
    server: S3Server = request.getfixturevalue("s3_server")
    # Presigning against the server itself: the tests fetch what it signed.
    return s3_config(server, public_url=server.endpoint_url)


@pytest.fixture
async def store(blob_backend: Path | S3Config) -> AsyncIterator[BlobStore]:
    if isinstance(blob_backend, Path):
        opened: BlobStore = await FilesystemBlobStore(blob_backend).open_store()
    else:
        opened = await S3BlobStore(blob_backend).open_store()
    yield opened
    await opened.close()


def unique_key(stem: str = "bot/users/u@web/inbox/m") -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}/0-file.bin"


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        await asyncio.sleep(0)
        yield data[start : start + chunk]


async def read_all(store: BlobStore, key: str, byte_range: ByteRange | None = None) -> bytes:
    async with store.open(key, byte_range=byte_range) as reader:
        return b"".join([chunk async for chunk in reader.chunks()])


async def test_a_put_streams_in_and_reads_back_the_same_bytes(store: BlobStore) -> None:
    data = os.urandom(300_000)
    key = unique_key()
    stored = await store.put(key, stream(data), content_type="Image/JPEG")
    assert stored.key == key
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.content_type == "image/jpeg"
    stat = await store.stat(key)
    assert stat is not None
    assert (stat.key, stat.size, stat.content_type) == (key, len(data), "image/jpeg")
    assert await read_all(store, key) == data
    async with store.open(key) as reader:
        chunks = [chunk async for chunk in reader.chunks()]
    assert max(len(c) for c in chunks) <= store.chunk_size


async def test_a_big_stream_goes_in_parts_and_comes_back_whole(store: BlobStore) -> None:
    data = os.urandom(2 * PART_SIZE + 12345)  # S3: a multipart upload of three parts
    key = unique_key()
    stored = await store.put(key, stream(data), content_type="video/mp4")
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    digest = hashlib.sha256()
    async with store.open(key) as reader:
        assert reader.stat.size == len(data)
        async for chunk in reader.chunks():
            digest.update(chunk)
    assert digest.hexdigest() == stored.sha256


async def test_an_empty_stream_is_an_empty_object(store: BlobStore) -> None:
    key = unique_key()
    stored = await store.put(key, stream(b""))
    assert (stored.size, stored.content_type) == (0, "application/octet-stream")
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read_all(store, key) == b""
    assert await read_all(store, key, ByteRange(0, 10)) == b""


@pytest.mark.parametrize(
    ("byte_range", "expected"),
    [
        (ByteRange(0, 0), b"0"),
        (ByteRange(2, 5), b"2345"),
        (ByteRange(7), b"789"),
        (ByteRange(8, 100), b"89"),  # clamped to the end
        (ByteRange(10), b""),
        (ByteRange(50, 60), b""),
    ],
)
async def test_a_range_reads_only_its_bytes(
    store: BlobStore, byte_range: ByteRange, expected: bytes
) -> None:
    key = unique_key()
    await store.put(key, stream(b"0123456789"), content_type="text/plain")
    async with store.open(key, byte_range=byte_range) as reader:
        assert reader.stat.size == 10  # the whole object's size, whatever the range
        assert b"".join([c async for c in reader.chunks()]) == expected


async def test_a_put_replaces_the_object_whole(store: BlobStore) -> None:
    key = unique_key()
    await store.put(key, stream(b"first version, rather long"), content_type="text/plain")
    await store.put(key, stream(b"second"), content_type="application/pdf")
    stat = await store.stat(key)
    assert stat is not None and (stat.size, stat.content_type) == (6, "application/pdf")
    assert await read_all(store, key) == b"second"


@pytest.mark.parametrize("size", [1000, 2 * PART_SIZE])
async def test_a_stream_past_the_limit_is_cut_off_and_nothing_is_stored(
    store: BlobStore, size: int
) -> None:
    key = unique_key()
    read = 0
    limit = size - 1

    async def counted() -> AsyncIterator[bytes]:
        nonlocal read
        data = os.urandom(size)
        for start in range(0, size, 64 * 1024):
            piece = data[start : start + 64 * 1024]
            read += len(piece)
            yield piece
        yield b"never read: the limit was crossed before"  # pragma: no cover
        raise AssertionError("read past the limit")  # pragma: no cover

    with pytest.raises(BlobTooLarge) as caught:
        await store.put(key, counted(), max_bytes=limit)
    assert caught.value.limit == limit
    assert read == size  # the chunk that crossed it was the last one read
    assert await store.stat(key) is None
    with pytest.raises(BlobNotFound):
        await read_all(store, key)


async def test_a_stream_exactly_at_the_limit_is_stored(store: BlobStore) -> None:
    key = unique_key()
    stored = await store.put(key, stream(b"x" * 1000), max_bytes=1000)
    assert stored.size == 1000


async def test_a_failing_stream_stores_nothing_and_keeps_the_old_object(store: BlobStore) -> None:
    key = unique_key()
    await store.put(key, stream(b"kept"), content_type="text/plain")

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (PART_SIZE + 1)  # S3: a multipart upload is under way, then aborted
        raise ConnectionResetError("the provider went away")

    with pytest.raises(ConnectionResetError):
        await store.put(key, broken())
    assert await read_all(store, key) == b"kept"


async def test_a_missing_object_has_no_stat_and_cannot_be_opened(store: BlobStore) -> None:
    key = unique_key()
    assert await store.stat(key) is None
    with pytest.raises(BlobNotFound):
        async with store.open(key):
            pass
    assert await store.delete(key) is False


async def test_delete_removes_the_object(store: BlobStore) -> None:
    key = unique_key()
    await store.put(key, stream(b"bye"))
    assert await store.delete(key) is True
    assert await store.stat(key) is None
    assert await store.delete(key) is False


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "bot/../../outside",
        "bot/./x",
        "bot//x",
        "bot/x/",
        "bot/.hidden",
        "bot\\..\\x",
        "bot/x\x00y",
        "bot/" + "x" * 256,
        "b/" * 600,
    ],
)
async def test_keys_that_could_escape_or_break_the_store_are_refused(
    store: BlobStore, key: str
) -> None:
    with pytest.raises(InvalidBlobKey):
        await store.put(key, stream(b"x"))
    with pytest.raises(InvalidBlobKey):
        await store.stat(key)
    with pytest.raises(InvalidBlobKey):
        check_key(key)


async def test_keys_of_two_bots_never_meet(store: BlobStore) -> None:
    suffix = uuid.uuid4().hex[:8]
    await store.put(f"shop-{suffix}/users/u@web/a.txt", stream(b"shop's"))
    await store.put(f"bank-{suffix}/users/u@web/a.txt", stream(b"bank's"))
    assert await read_all(store, f"shop-{suffix}/users/u@web/a.txt") == b"shop's"
    assert await read_all(store, f"bank-{suffix}/users/u@web/a.txt") == b"bank's"


async def test_puts_of_many_keys_at_once_each_keep_their_bytes(store: BlobStore) -> None:
    blobs = {unique_key(): os.urandom(50_000 + i) for i in range(8)}
    stored = await asyncio.gather(*(store.put(k, stream(v)) for k, v in blobs.items()))
    assert [s.size for s in stored] == [len(v) for v in blobs.values()]
    for key, data in blobs.items():
        assert await read_all(store, key) == data


async def test_presigned_urls_are_the_stores_own_or_none(store: BlobStore) -> None:
    key = unique_key()
    await store.put(key, stream(b"picture bytes"), content_type="image/png")
    url = await store.presigned_url(
        key, expires_in=60, filename="cat photo.png", content_type="image/png"
    )
    if isinstance(store, FilesystemBlobStore):
        assert url is None  # the gateway serves these
        return
    assert url is not None
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        assert answer.status == 200
        assert await answer.read() == b"picture bytes"
        assert answer.headers["Content-Type"] == "image/png"
        assert "cat%20photo.png" in answer.headers["Content-Disposition"]


# -- S3 only: the server checks our signatures -----------------------------------------------


@pytest.fixture
async def s3(s3_server: S3Server) -> AsyncIterator[S3BlobStore]:
    opened = await S3BlobStore(s3_config(s3_server, public_url=s3_server.endpoint_url)).open_store()
    yield opened
    await opened.close()


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_a_tampered_presigned_url_is_refused_by_the_server(s3: S3BlobStore) -> None:
    key = unique_key()
    other = unique_key()
    await s3.put(key, stream(b"private"))
    await s3.put(other, stream(b"someone else's"))
    url = await s3.presigned_url(key, expires_in=60, filename=None, content_type=None)
    assert url is not None
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    tampered = [
        _with(url, **{"X-Amz-Signature": flipped}),  # a forged signature
        _with(url, **{"X-Amz-Expires": "604800"}),  # a longer life
        url.replace(key.split("/")[-2], other.split("/")[-2]),  # another object, same signature
        _with(url, **{"response-content-type": "text/html"}),  # an added parameter
    ]
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as answer:
            assert (answer.status, await answer.read()) == (200, b"private")
        for bad in tampered:
            async with http.get(bad) as answer:
                assert answer.status == 403, bad
        async with http.get(f"{s3.config.public_url}/{s3.config.bucket}/{key}") as answer:
            assert answer.status == 403  # and nothing without a signature


async def test_an_expired_presigned_url_is_refused(s3: S3BlobStore) -> None:
    key = unique_key()
    await s3.put(key, stream(b"short-lived"))
    url = await s3.presigned_url(key, expires_in=1, filename=None, content_type=None)
    assert url is not None
    await asyncio.sleep(2.1)
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        assert answer.status == 403


async def test_without_a_public_endpoint_there_is_no_presigned_url(s3_server: S3Server) -> None:
    store = await S3BlobStore(s3_config(s3_server)).open_store()
    try:
        assert not store.config.presigns
        key = unique_key()
        await store.put(key, stream(b"x"))
        assert (
            await store.presigned_url(key, expires_in=60, filename=None, content_type=None) is None
        )
    finally:
        await store.close()


async def test_a_missing_bucket_is_made_on_open(s3_server: S3Server) -> None:
    bucket = f"made-{uuid.uuid4().hex[:12]}"
    store = await S3BlobStore(s3_config(s3_server, bucket=bucket)).open_store()
    try:
        await store.put("bot/a.txt", stream(b"in a new bucket"))
        assert await read_all(store, "bot/a.txt") == b"in a new bucket"
        assert await store.ping()
    finally:
        await store.close()


async def test_wrong_credentials_fail_on_open_at_once(s3_server: S3Server) -> None:
    config = S3Config(
        bucket="botserver-test",
        access_key_id=s3_server.access_key,
        secret_access_key="not-the-secret",
        endpoint_url=s3_server.endpoint_url,
    )
    with pytest.raises(BlobError, match="refused"):
        await S3BlobStore(config).open_store(wait=30)


async def test_an_unreachable_server_fails_on_open_after_the_wait() -> None:
    config = S3Config(
        bucket="botserver-test",
        access_key_id="k",
        secret_access_key="s",
        endpoint_url="http://127.0.0.1:1",
    )
    with pytest.raises(BlobError, match="unreachable"):
        await S3BlobStore(config).open_store(wait=0.5)


async def test_the_secret_never_shows_in_the_config_repr(s3_server: S3Server) -> None:
    assert s3_server.secret_key not in repr(s3_config(s3_server))


# -- filesystem only -----------------------------------------------------------------------


async def test_a_symlink_inside_the_tree_does_not_lead_out(tmp_path: Path) -> None:
    store = await FilesystemBlobStore(tmp_path / "blobs").open_store()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "blobs" / "objects" / "bot").symlink_to(outside)
    with pytest.raises(InvalidBlobKey):
        await store.put("bot/x.txt", stream(b"x"))
    assert list(outside.iterdir()) == []


async def test_files_are_plain_files_under_the_data_dir_and_no_temp_is_left(
    tmp_path: Path,
) -> None:
    store = await FilesystemBlobStore(tmp_path / "blobs").open_store()
    await store.put("bot/users/u@web/a.txt", stream(b"hello"), content_type="text/plain")

    async def broken() -> AsyncIterator[bytes]:
        yield b"half"
        raise ConnectionResetError("the provider went away")

    with pytest.raises(ConnectionResetError):
        await store.put("bot/users/u@web/b.txt", broken())
    (tmp_path / "blobs/objects/bot/users/u@web/c.txt").mkdir(parents=True)  # a disk refusal
    with pytest.raises(BlobError, match="cannot write"):
        await store.put("bot/users/u@web/c.txt", stream(b"x"))
    assert (tmp_path / "blobs/objects/bot/users/u@web/a.txt").read_bytes() == b"hello"
    assert list((tmp_path / "blobs/tmp").iterdir()) == []
