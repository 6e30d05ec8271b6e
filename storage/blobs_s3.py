"""The blob store on S3 (AWS, MinIO, SeaweedFS, any S3-compatible server) through aioboto3.

A put reads its stream into parts of :data:`PART_SIZE` (S3's smallest part size): a
stream that ends within the first part is one ``PutObject``, a longer one a multipart
upload, part by part, completed at the end or aborted on any error (the size limit
included), so a key never names half an object. At most one part is held in memory.

Reads stream ``GetObject``'s body a chunk at a time. :meth:`S3BlobStore.presigned_url`
signs GET URLs with SigV4 when the endpoint is one clients can reach (AWS itself, or
``S3_PUBLIC_URL``); otherwise the gateway serves the bytes behind its own signed URLs.
Every botocore and transport error becomes :class:`~storage.blobs_base.BlobError` in
:func:`_translated`, the one place that maps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.blobs_base import (
    BlobError,
    BlobNotFound,
    BlobStat,
    ByteRange,
    MeteredStream,
    StoredBlob,
    check_key,
    clamp,
    normal_content_type,
)

log = logging.getLogger(__name__)

PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_CHUNK = 64 * 1024
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where the bucket is and the credentials to reach it (``S3_*``, ``AWS_*``)."""

    bucket: str
    access_key_id: str
    secret_access_key: str
    endpoint_url: str | None = None  # None: AWS itself
    region: str = "us-east-1"
    # The endpoint clients (browsers, Twilio) reach, for presigned URLs; None with an
    # endpoint_url of our own: the gateway serves the files instead.
    public_url: str | None = None

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"S3Config(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def presigns(self) -> bool:
        return self.public_url is not None or self.endpoint_url is None


class S3BlobStore:
    """:class:`~storage.blobs_base.BlobStore` in one bucket; open it with :meth:`open_store`."""

    def __init__(
        self, config: S3Config, *, part_size: int = PART_SIZE, chunk_size: int = DEFAULT_CHUNK
    ) -> None:
        if part_size < PART_SIZE:
            raise ValueError(f"S3 parts are at least {PART_SIZE} bytes")
        self.config = config
        self.part_size = part_size
        self.chunk_size = chunk_size
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._presigner: Any = None

    async def open_store(self, *, wait: float = 30.0) -> S3BlobStore:
        """Open the clients and make sure the bucket exists (made if it does not).

        A server still starting is waited for up to ``wait`` seconds; then, or at once
        for refused credentials, :class:`BlobError` says what is wrong.
        """
        config = self.config
        session = aioboto3.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            region_name=config.region,
        )
        botocore_config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if config.endpoint_url else "auto"},
            # Checksums only where S3 requires them: not every S3-compatible server reads
            # the aws-chunked trailers that botocore otherwise sends.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        try:
            self._client = await self._stack.enter_async_context(
                session.client("s3", endpoint_url=config.endpoint_url, config=botocore_config)
            )
            self._presigner = self._client
            if config.public_url is not None:
                # Presigning is local computation; this client never sends a request.
                self._presigner = await self._stack.enter_async_context(
                    session.client("s3", endpoint_url=config.public_url, config=botocore_config)
                )
            await self._ensure_bucket(wait)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _ensure_bucket(self, wait: float) -> None:
        bucket = self.config.bucket
        deadline = time.monotonic() + wait
        delay = 0.25
        while True:
            try:
                with _translated(f"bucket {bucket!r}"):
                    try:
                        await self._client.head_bucket(Bucket=bucket)
                        return
                    except ClientError as e:
                        if _code(e) not in _NOT_FOUND:
                            raise
                    options: dict[str, Any] = {"Bucket": bucket}
                    if self.config.region != "us-east-1" and self.config.endpoint_url is None:
                        options["CreateBucketConfiguration"] = {
                            "LocationConstraint": self.config.region
                        }
                    await self._client.create_bucket(**options)
                    log.info("S3 bucket %s created", bucket)
                    return
            except BlobError as e:
                if _refused(e) or time.monotonic() + delay > deadline:
                    raise
                log.info("S3 not reachable yet (%s); trying again", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- writing --------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredBlob:
        check_key(key)
        ctype = normal_content_type(content_type)
        metered = MeteredStream(data, max_bytes)
        bucket = self.config.bucket
        buffer = io.BytesIO()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in metered:
                buffer.write(chunk)
                if buffer.tell() >= self.part_size:
                    if upload_id is None:
                        with _translated(f"blob {key!r}"):
                            started = await self._client.create_multipart_upload(
                                Bucket=bucket, Key=key, ContentType=ctype
                            )
                        upload_id = str(started["UploadId"])
                    parts.append(await self._part(key, upload_id, len(parts) + 1, buffer))
                    buffer = io.BytesIO()
            with _translated(f"blob {key!r}"):
                if upload_id is None:
                    await self._client.put_object(
                        Bucket=bucket,
                        Key=key,
                        Body=_rewound(buffer),
                        ContentType=ctype,
                    )
                else:
                    if buffer.tell():
                        parts.append(await self._part(key, upload_id, len(parts) + 1, buffer))
                    buffer = io.BytesIO()
                    await self._client.complete_multipart_upload(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},
                    )
        except BaseException:
            if upload_id is not None:
                await asyncio.shield(self._abort(key, upload_id))
            raise
        return StoredBlob(key=key, size=metered.size, sha256=metered.sha256, content_type=ctype)

    async def _part(
        self, key: str, upload_id: str, number: int, body: io.BytesIO
    ) -> dict[str, Any]:
        with _translated(f"blob {key!r}"):
            answer = await self._client.upload_part(
                Bucket=self.config.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_rewound(body),
            )
        return {"ETag": answer["ETag"], "PartNumber": number}

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            with _translated(f"blob {key!r}"):
                await self._client.abort_multipart_upload(
                    Bucket=self.config.bucket, Key=key, UploadId=upload_id
                )
        except BlobError as e:  # the bucket's lifecycle rules clean it up eventually
            log.warning("could not abort the upload of %s: %s", key, e)

    async def delete(self, key: str) -> bool:
        if await self.stat(key) is None:
            return False
        with _translated(f"blob {key!r}"):
            await self._client.delete_object(Bucket=self.config.bucket, Key=key)
        return True

    # -- reading --------------------------------------------------------------------------

    async def stat(self, key: str) -> BlobStat | None:
        check_key(key)
        with _translated(f"blob {key!r}"):
            try:
                head = await self._client.head_object(Bucket=self.config.bucket, Key=key)
            except ClientError as e:
                if _code(e) in _NOT_FOUND:
                    return None
                raise
        return BlobStat(
            key=key,
            size=int(head["ContentLength"]),
            content_type=normal_content_type(head.get("ContentType")),
            modified=_utc(head.get("LastModified")),
        )

    @contextlib.asynccontextmanager
    async def open(
        self, key: str, *, byte_range: ByteRange | None = None
    ) -> AsyncIterator[_S3Reader]:
        check_key(key)
        options: dict[str, Any] = {"Bucket": self.config.bucket, "Key": key}
        stat: BlobStat | None = None
        if byte_range is not None:
            # The object's size clamps the range (S3 refuses one past the end).
            stat = await self.stat(key)
            if stat is None:
                raise BlobNotFound(key)
            start, stop = clamp(byte_range, stat.size)
            if stop <= start:
                yield _S3Reader(stat, None, self.chunk_size)
                return
            options["Range"] = f"bytes={start}-{stop - 1}"
        with _translated(f"blob {key!r}"):
            try:
                answer = await self._client.get_object(**options)
            except ClientError as e:
                if _code(e) in _NOT_FOUND:
                    raise BlobNotFound(key) from e
                raise
        body = answer["Body"]
        if stat is None:
            stat = BlobStat(
                key=key,
                size=int(answer["ContentLength"]),
                content_type=normal_content_type(answer.get("ContentType")),
                modified=_utc(answer.get("LastModified")),
            )
        async with body:
            yield _S3Reader(stat, body, self.chunk_size)

    async def presigned_url(
        self, key: str, *, expires_in: int, filename: str | None, content_type: str | None
    ) -> str | None:
        if not self.config.presigns:
            return None
        check_key(key)
        params: dict[str, Any] = {"Bucket": self.config.bucket, "Key": key}
        if content_type:
            params["ResponseContentType"] = content_type
        if filename:
            params["ResponseContentDisposition"] = (
                f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
            )
        with _translated(f"blob {key!r}"):
            url: str = await self._presigner.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        return url

    async def ping(self) -> bool:
        try:
            with _translated("bucket"):
                await self._client.head_bucket(Bucket=self.config.bucket)
        except BlobError as e:
            log.warning("S3 ping failed: %s", e)
            return False
        return True

    async def close(self) -> None:
        await self._stack.aclose()


class _S3Reader:
    """A GetObject body, read a chunk at a time."""

    def __init__(self, stat: BlobStat, body: Any, chunk_size: int) -> None:
        self.stat = stat
        self._body = body
        self._chunk = chunk_size

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._body is None:
            return
        with _translated(f"blob {self.stat.key!r}"):
            async for chunk in self._body.iter_chunks(self._chunk):
                yield chunk


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """The one place botocore's and the transport's errors become :class:`BlobError`."""
    try:
        yield
    except ClientError as e:
        raise BlobError(f"S3 refused {what}: {_code(e)} {_message(e)}") from e
    except (BotoCoreError, aiohttp.ClientError, OSError) as e:
        raise BlobError(f"S3 unreachable for {what}: {type(e).__name__}: {e}") from e
    except TimeoutError as e:
        raise BlobError(f"S3 took too long for {what}") from e


def _rewound(buffer: io.BytesIO) -> io.BytesIO:
    # A file object, not bytes: botocore hashes it and aiohttp sends it a block at a
    # time, where a bytes body is copied on the way (three copies of each part in all).
    buffer.seek(0)
    return buffer


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")).strip()


def _refused(error: BlobError) -> bool:
    """Refused by a server that answered (bad credentials, no access): no use waiting."""
    return isinstance(error.__cause__, ClientError)


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)
