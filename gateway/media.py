"""``GET /media/{token}``: a stored file, to whoever holds a valid signed token.

The token (see :mod:`storage.blob_urls`) is the credential: no other is asked for, so
the widget's ``<img>`` and a provider fetching media by URL (Twilio) can use it. A
forged, tampered or expired token is 403; a file deleted since is 404. The file is
streamed from the blob store with its content type, length and a
``Content-Disposition``; ``Range: bytes=…`` (one range) answers 206.

Files are what users sent, so they are served as inert: ``nosniff``, a sandboxing
``Content-Security-Policy``, and ``inline`` only for types a browser shows without
running anything (images other than SVG, audio, video, PDF, plain text); anything else
downloads.
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import quote

from aiohttp import web

from gateway.keys import MEDIA_URLS, STORES
from gateway.responses import json_error
from storage.blob_urls import MediaTokenError
from storage.blobs_base import BlobNotFound, ByteRange

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_INLINE = re.compile(
    r"(image/(png|jpeg|gif|webp|avif|bmp)|audio/[a-z0-9.+-]+|video/[a-z0-9.+-]+"
    r"|application/pdf|text/plain)(;.*)?"
)
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; sandbox",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Referrer-Policy": "no-referrer",
}


@routes.get("/media/{token}")
async def get_media(request: web.Request) -> web.StreamResponse:
    """Stream the file the token names (see the module's docstring)."""
    urls = request.app[MEDIA_URLS]
    try:
        grant = urls.tokens.read(request.match_info["token"])
    except MediaTokenError as e:
        log.info("media token refused: %s", e)
        return json_error(403, "forbidden", "this media link is not valid or has expired")
    blobs = request.app[STORES].blobs
    stat = await blobs.stat(grant.key)
    if stat is None:
        return json_error(404, "not_found", "this file no longer exists")
    wanted = _range(request.headers.get("Range"), stat.size)
    if wanted == "unsatisfiable":
        return web.Response(
            status=416, headers={"Content-Range": f"bytes */{stat.size}", **_SECURITY_HEADERS}
        )
    byte_range = wanted if isinstance(wanted, ByteRange) else None
    try:
        async with blobs.open(grant.key, byte_range=byte_range) as reader:
            response = web.StreamResponse(status=206 if byte_range else 200)
            response.content_type = reader.stat.content_type.split(";")[0]
            if ";" in reader.stat.content_type:
                response.headers["Content-Type"] = reader.stat.content_type
            start, stop = (0, reader.stat.size)
            if byte_range is not None:
                start = byte_range.start
                stop = min(byte_range.end + 1 if byte_range.end is not None else stop, stop)
                response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{reader.stat.size}"
            response.content_length = stop - start
            response.headers["Accept-Ranges"] = "bytes"
            response.headers["Content-Disposition"] = _disposition(
                reader.stat.content_type, grant.filename or grant.key.rsplit("/", 1)[-1]
            )
            left = max(int(grant.expires - time.time()), 0)
            response.headers["Cache-Control"] = f"private, max-age={left}"
            response.headers.update(_SECURITY_HEADERS)
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in reader.chunks():
                    await response.write(chunk)
            await response.write_eof()
            return response
    except BlobNotFound:
        return json_error(404, "not_found", "this file no longer exists")


def _range(header: str | None, size: int) -> ByteRange | str | None:
    """One ``bytes=`` range of the header, clamped; ``None`` for none (or several, which
    are answered whole); ``"unsatisfiable"`` past the end."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0:
            return "unsatisfiable"
        return ByteRange(max(size - count, 0), size - 1) if size else "unsatisfiable"
    start = int(first)
    if start >= size:
        return "unsatisfiable"
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None
    return ByteRange(start, end)


def _disposition(content_type: str, filename: str) -> str:
    kind = "inline" if _INLINE.fullmatch(content_type) else "attachment"
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", filename) or "file"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
