"""URLs that let a browser or a provider fetch one stored file, for a while.

On S3 with a reachable endpoint these are the store's own presigned URLs. Otherwise the
gateway serves the file at ``/media/{token}``: the token carries the key, an expiry and
the name to download it as, and an HMAC-SHA256 of them under the media key
(``BOTSERVER_MEDIA_SECRET``, else a key kept in the database and shared by every
instance). A token is checked in constant time; one that was changed in any way, or
that expired, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from storage.blobs_base import BlobStore, InvalidBlobKey, check_key

MEDIA_PATH = "/media/"
DEFAULT_TTL = 3600  # seconds a URL stays valid
MAX_TTL = 7 * 24 * 3600  # S3's own limit for presigned URLs
_VERSION = "1"
_CONTEXT = b"botserver-media-url\x00"  # keeps these MACs apart from the key's other uses


class MediaTokenError(Exception):
    """A media token that is malformed, forged, tampered with or expired."""


@dataclass(frozen=True, slots=True)
class MediaGrant:
    """What a valid token allows: GET ``key`` until ``expires`` (unix seconds)."""

    key: str
    expires: int
    filename: str | None


class MediaTokens:
    """Issues and checks the gateway's media tokens under one secret."""

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the media key must be 32 bytes or more")
        self._secret = secret
        self._clock = clock

    def issue(self, key: str, *, expires_in: int = DEFAULT_TTL, filename: str | None = None) -> str:
        check_key(key)
        expires = int(self._clock()) + max(1, min(expires_in, MAX_TTL))
        name = (filename or "").replace("\n", " ").replace("\r", " ")
        payload = "\n".join((_VERSION, str(expires), name, key)).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def read(self, token: str) -> MediaGrant:
        """The grant of a valid token; :class:`MediaTokenError` otherwise."""
        body, dot, signature = token.partition(".")
        if not dot or len(token) > 4096:
            raise MediaTokenError("not a media token")
        try:
            payload = _unb64(body)
            mac = _unb64(signature)
        except (binascii.Error, ValueError) as e:
            raise MediaTokenError("not a media token") from e
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise MediaTokenError("the media token's signature does not match")
        try:
            version, expires, name, key = payload.decode().split("\n", 3)
            deadline = int(expires)
            check_key(key)
        except (UnicodeDecodeError, ValueError, InvalidBlobKey) as e:
            raise MediaTokenError("not a media token") from e
        if version != _VERSION:
            raise MediaTokenError("a media token of another version")
        if deadline < self._clock():
            raise MediaTokenError("the media token expired")
        return MediaGrant(key=key, expires=deadline, filename=name or None)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _CONTEXT + payload, hashlib.sha256).digest()


class MediaUrls:
    """The URL to give out for a stored file: the store's presigned one, else the gateway's.

    ``base_url`` is the gateway's public address (``BOTSERVER_PUBLIC_URL``); without one
    the gateway's URLs are paths (``/media/…``), which the widget and the web API's
    clients resolve against the gateway, and providers that fetch media (Twilio) cannot.
    """

    def __init__(
        self, blobs: BlobStore, tokens: MediaTokens, *, base_url: str = "", ttl: int = DEFAULT_TTL
    ) -> None:
        self.blobs = blobs
        self.tokens = tokens
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl

    async def url(
        self,
        key: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        expires_in: int | None = None,
    ) -> str:
        ttl = max(1, min(self.ttl if expires_in is None else expires_in, MAX_TTL))
        presigned = await self.blobs.presigned_url(
            key, expires_in=ttl, filename=filename, content_type=content_type
        )
        if presigned is not None:
            return presigned
        token = self.tokens.issue(key, expires_in=ttl, filename=filename)
        return f"{self.base_url}{MEDIA_PATH}{token}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the alphabet, and only the one spelling :func:`_b64` gives (the decoder
    would otherwise skip stray characters and ignore a last character's spare bits)."""
    if not text or len(text) % 4 == 1:
        raise ValueError("bad base64")
    standard = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    data = base64.b64decode(standard, validate=True)
    if _b64(data) != text:
        raise ValueError("bad base64")
    return data
