"""A fake Graph API (WhatsApp Cloud API) on 127.0.0.1 that speaks Meta's wire format.

``POST /{version}/{phone-number-id}/messages`` with a Bearer token answers
``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid.…"}]}``;
scripted failures answer Meta's error object with the HTTP status Meta uses.
Every call is recorded for the tests to read.

Media: ``GET /{version}/{media-id}`` (Bearer token) answers the file's short-lived
download URL with its mime type, size and SHA-256, as Meta does; the download there
needs the same token. Files are added with :meth:`FakeGraphApi.add_media`.

Uploads: ``POST /{version}/{phone-number-id}/media`` takes Meta's multipart form
(``messaging_product=whatsapp``, ``type``, and the ``file`` part), refuses types the Cloud
API does not take and files over its limits, and answers ``{"id": "<media id>"}``; an
image, audio, video or document message must name an uploaded id (or a ``link``).
Uploads are kept in :attr:`FakeGraphApi.uploads`; :meth:`FakeGraphApi.fail_upload_next`
scripts an upload's failure.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

VERSION = "v23.0"
PHONE_NUMBER_ID = "106540352242922"
TOKEN = "EAAG-test-access-token"

# What Meta answers for the codes the adapter maps (message, type, HTTP status).
ERRORS: dict[int, tuple[str, str, int]] = {
    131047: ("(#131047) Re-engagement message", "OAuthException", 400),
    130429: ("(#130429) Rate limit hit", "OAuthException", 400),
    131056: (
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "OAuthException",
        400,
    ),
    131000: ("(#131000) Something went wrong", "OAuthException", 500),
    100: ("(#100) Invalid parameter", "OAuthException", 400),
}


@dataclass
class GraphCall:
    """One request the fake received, and when it arrived (``time.monotonic()``)."""

    path: str
    headers: dict[str, str]
    json: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class GraphUpload:
    """One uploaded file: its media id, the form's type, the part's name and type, bytes."""

    media_id: str
    type: str
    filename: str | None
    content_type: str
    data: bytes
    chunked: bool  # sent as a stream (no Content-Length): never held whole by the sender


# Meta's upload limits by the type's family (documents: anything else).
UPLOAD_LIMITS = {"image": 5 << 20, "audio": 16 << 20, "video": 16 << 20}
_UPLOAD_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "audio/aac",
        "audio/amr",
        "audio/mpeg",
        "audio/mp4",
        "audio/ogg",
        "audio/opus",
        "video/mp4",
        "video/3gpp",
        "text/plain",
        "application/pdf",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/octet-stream",
        "text/csv",
    }
)


@dataclass
class _Failure:
    status: int
    code: int | None
    message: str
    retry_after: str | None
    raw_body: bytes | None = None


@dataclass
class FakeGraphApi:
    """The fake server; :meth:`start` returns the ``whatsapp-api-url`` to configure."""

    version: str = VERSION
    phone_number_id: str = PHONE_NUMBER_ID
    token: str = TOKEN
    calls: list[GraphCall] = field(default_factory=list)
    delay: float = 0.0
    _failures: list[_Failure] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    api_url: str = ""
    base_url: str = ""
    # media id -> (mime type, bytes); expired ids still resolve but their URL is 404.
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    expired: set[str] = field(default_factory=set)
    downloads: dict[str, int] = field(default_factory=dict)
    lookups: dict[str, int] = field(default_factory=dict)
    media_failures: list[int] = field(default_factory=list)
    wrong_sha256: set[str] = field(default_factory=set)
    uploads: list[GraphUpload] = field(default_factory=list, repr=False)
    upload_failures: list[int] = field(default_factory=list)
    upload_delay: float = 0.0  # seconds an upload takes once its body has arrived
    uploads_arrived: int = 0  # upload bodies received, answered or not yet

    def fail_next(
        self,
        code: int | None,
        *,
        status: int | None = None,
        retry_after: str | None = None,
        raw_body: bytes | None = None,
    ) -> None:
        """Answer the next send with Meta's error ``code`` (and its usual HTTP status)."""
        message, _, usual_status = ERRORS.get(code or 0, ("(#0) Error", "OAuthException", 400))
        self._failures.append(
            _Failure(status or usual_status, code, message, retry_after, raw_body)
        )

    def fail_upload_next(self, status: int) -> None:
        """Answer the next upload with Meta's error for ``status`` (500: code 131000)."""
        self.upload_failures.append(status)

    def add_media(self, media_id: str, data: bytes, mime_type: str) -> None:
        """A file the user sent: its id comes in the webhook, its bytes from the lookup."""
        self.media[media_id] = (mime_type, data)

    async def start(self) -> str:
        app = web.Application(client_max_size=110 << 20)  # 100 MB documents
        app.router.add_post("/{version}/{phone_id}/messages", self._messages)
        app.router.add_post("/{version}/{phone_id}/media", self._upload)
        app.router.add_get("/{version}/{media_id}", self._media_lookup)
        app.router.add_get("/whatsapp_business/attachments/", self._media_download)
        # A handler sleeping for a timeout test must not hold the shutdown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.base_url}/{self.version}"
        return self.api_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def sent(self) -> list[Any]:
        """The JSON bodies of the accepted and refused sends, in order."""
        return [c.json for c in self.calls]

    def _error(self, status: int, code: int, message: str, **extra: Any) -> web.Response:
        body = {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": message},
                "fbtrace_id": "AbCdEf0123456789",
                **extra,
            }
        }
        return web.json_response(body, status=status)

    def _bearer_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _media_lookup(self, request: web.Request) -> web.Response:
        media_id = request.match_info["media_id"]
        self.lookups[media_id] = self.lookups.get(media_id, 0) + 1
        if not self._bearer_ok(request):
            return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if self.media_failures:
            status = self.media_failures.pop(0)
            return self._error(status, 131000 if status >= 500 else 100, "(#131000) Something")
        if media_id not in self.media:
            return self._error(
                400,
                100,
                f"Unsupported get request. Object with ID '{media_id}' does not exist",
                error_subcode=33,
            )
        mime, data = self.media[media_id]
        digest = hashlib.sha256(data).hexdigest()
        if media_id in self.wrong_sha256:
            digest = hashlib.sha256(b"something else").hexdigest()
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                # Meta's URLs are signed and live about five minutes.
                "url": f"{self.base_url}/whatsapp_business/attachments/?mid={media_id}&ext=1",
                "mime_type": mime,
                "sha256": digest,
                "file_size": len(data),
                "id": media_id,
            }
        )

    async def _media_download(self, request: web.Request) -> web.StreamResponse:
        media_id = request.query.get("mid", "")
        self.downloads[media_id] = self.downloads.get(media_id, 0) + 1
        if not self._bearer_ok(request):
            return web.Response(status=401, text="Unauthorized")
        if media_id not in self.media or media_id in self.expired:
            return web.Response(status=404, text="URL signature expired")
        mime, data = self.media[media_id]
        response = web.StreamResponse(headers={"Content-Type": mime})
        response.content_length = len(data)
        await response.prepare(request)
        for start in range(0, len(data), 256 * 1024):
            await response.write(data[start : start + 256 * 1024])
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if request.match_info["phone_id"] != self.phone_number_id:
            return self._error(400, 100, "Unsupported post request.", error_subcode=33)
        chunked = "Content-Length" not in request.headers
        form = await request.post()
        self.uploads_arrived += 1
        if self.upload_delay:
            await asyncio.sleep(self.upload_delay)
        if self.upload_failures:
            status = self.upload_failures.pop(0)
            code = 131000 if status >= 500 else 100
            return self._error(status, code, ERRORS[code][0])
        if form.get("messaging_product") != "whatsapp":
            return self._error(400, 100, "(#100) The parameter messaging_product is required.")
        part = form.get("file")
        if not isinstance(part, web.FileField):
            return self._error(400, 100, "(#100) The parameter file is required.")
        media = str(form.get("type") or part.content_type).partition(";")[0]
        if media not in _UPLOAD_TYPES:
            return self._error(400, 131053, f"(#131053) Media upload error: {media} unsupported")
        data = part.file.read()
        limit = UPLOAD_LIMITS.get(media.partition("/")[0], 100 << 20)
        if len(data) > limit:
            return self._error(400, 131053, "(#131053) Media upload error: file too large")
        media_id = f"{next(self._ids) + 900000000000000}"
        self.uploads.append(
            GraphUpload(media_id, media, part.filename, part.content_type, data, chunked)
        )
        return web.json_response({"id": media_id})

    def _media_ok(self, payload: dict[str, Any]) -> bool:
        kind = payload.get("type")
        if kind not in ("image", "audio", "video", "document", "sticker"):
            return True
        body = payload.get(kind)
        if not isinstance(body, dict):
            return False
        if "link" in body:
            return True
        return any(u.media_id == body.get("id") for u in self.uploads)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        self.calls.append(GraphCall(request.path, dict(request.headers), payload))
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.match_info["version"] != self.version:
            return self._error(
                400, 2635, f"(#2635) Unknown API version {request.match_info['version']}"
            )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if request.match_info["phone_id"] != self.phone_number_id:
            return self._error(
                400,
                100,
                f"Unsupported post request. Object with ID '{request.match_info['phone_id']}' "
                "does not exist",
                error_subcode=33,
            )
        if self._failures:
            failure = self._failures.pop(0)
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
            if failure.raw_body is not None:
                return web.Response(body=failure.raw_body, status=failure.status, headers=headers)
            response = self._error(failure.status, failure.code or 0, failure.message)
            if headers:
                response.headers.update(headers)
            return response
        if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
            return self._error(400, 100, "(#100) The parameter messaging_product is required.")
        if not self._media_ok(payload):
            return self._error(400, 100, "(#100) Invalid parameter: media id not found")
        to = str(payload.get("to", ""))
        wamid = "wamid." + base64.b64encode(f"HBgL{to}{next(self._ids):08d}".encode()).decode()
        message: dict[str, Any] = {"id": wamid}
        if payload.get("type") == "template":
            message["message_status"] = "accepted"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [message],
            }
        )
