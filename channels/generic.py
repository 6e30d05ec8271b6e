"""The generic webhook channel: any backend that signs its JSON speaks to a bot.

Inbound, ``POST /webhooks/generic/{bot}`` carries ``{"user_id", "text", "message_id",
"attachments"?}``; outbound, every bot message (and event) is POSTed to the bot's
``webhook-callback-url``. Both directions are signed the same way, with the bot's
``webhook-secret``:

    X-Botserver-Timestamp: <unix seconds>
    X-Botserver-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

A request is refused (:class:`VerificationError`) when the signature is missing or does not
match (compared in constant time), or when its timestamp is older than
:data:`MAX_AGE` seconds or more than :data:`MAX_AHEAD` ahead of our clock. Within that
window the gateway refuses the same signature a second time (a replay, see
``gateway/webhooks.py``); a sender retrying signs again with a fresh timestamp, and the
inbox's uniqueness on ``message_id`` keeps the retry from running a second turn.

Outbound events are JSON objects with ``event`` (``message``, ``delivered``, ``handoff``:
a conversation transferred to a person, taken, released or abandoned), a stable ``id``
(the same on every retry, for the receiver to drop duplicates), ``bot``, ``user_id`` and
``at``. A callback URL is reached only on a public address (the dialogs' HTTP guard,
checked on the very address connected to) unless the bot's ``webhook-allow-private`` row
is true; redirects are not followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from channels.base import (
    Attachment,
    Capabilities,
    ChannelNotConfigured,
    InboundMessage,
    MediaGone,
    MediaInfo,
    MediaKind,
    PayloadError,
    ProviderUnavailable,
    RateLimited,
    RenderedPart,
    SendError,
    SendRefused,
    SendResult,
    StreamMode,
    TextFormat,
    VerificationError,
    WebhookRequest,
    WebhookResult,
)
from channels.http_transport import client_timeout, transport_error
from channels.media_http import HttpDownload, MiB, download, media_session
from channels.private_addresses import ForbiddenAddress, forbidden, guarded_socket_factory

log = logging.getLogger(__name__)

NAME = "generic"
SIGNATURE_HEADER = "X-Botserver-Signature"
TIMESTAMP_HEADER = "X-Botserver-Timestamp"
MAX_AGE = 300  # seconds a signed request stays valid
MAX_AHEAD = 60  # seconds a sender's clock may run ahead of ours
MAX_ID = 255
MAX_TEXT = 64 * 1024
MAX_ATTACHMENTS = 10
MAX_MEDIA = 16 * MiB  # the largest attachment fetched from a sender's URL
EVENTS = ("message", "delivered", "handoff")

CONFIG_KEYS = ("webhook-secret", "webhook-callback-url", "webhook-allow-private")
_REQUIRED = ("webhook-secret", "webhook-callback-url")
_TRUE = frozenset({"true", "yes", "1", "on"})

CAPABILITIES = Capabilities(
    max_text_length=MAX_TEXT,
    text_format=TextFormat.MARKDOWN,  # the receiving app renders it
    stream_mode=StreamMode.PARAGRAPHS,
    max_buttons=10,
    max_button_label=256,
    media_kinds=frozenset(MediaKind),
)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Botserver-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: bytes, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The headers that sign ``body`` now (what a sender of the inbound webhook sends)."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


class GenericChannel:
    """One bot's generic webhook: signed JSON in, signed JSON events out."""

    name = NAME
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        secret: str,
        callback_url: str,
        bot: str = "",
        allow_private: bool = False,
        clock: Callable[[], float] = time.time,
        refuse: Callable[[str], bool] = forbidden,
    ) -> None:
        self._secret = secret.encode()
        self.bot = bot
        self.callback_url = callback_url
        self.allow_private = allow_private
        self._clock = clock
        self._refuse = refuse
        self._timeout = client_timeout()
        self._session: aiohttp.ClientSession | None = None
        self._downloads: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, bot: str, config: Mapping[str, str]) -> GenericChannel:
        """Build the adapter from a bot's rows; :class:`ChannelNotConfigured` names what is
        missing (no secret: nothing could be checked, so the channel stays off)."""
        values = {key: config.get(key, "").strip() for key in CONFIG_KEYS}
        missing = [key for key in _REQUIRED if not values[key]]
        if missing:
            raise ChannelNotConfigured(
                f"bot {bot!r}: the generic webhook needs {', '.join(missing)}"
            )
        url = values["webhook-callback-url"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChannelNotConfigured(
                f"bot {bot!r}: webhook-callback-url must be an http or https URL"
            )
        if len(values["webhook-secret"].encode()) < 16:
            raise ChannelNotConfigured(f"bot {bot!r}: webhook-secret must be 16 bytes or more")
        return cls(
            secret=values["webhook-secret"],
            callback_url=url,
            bot=bot,
            allow_private=values["webhook-allow-private"].lower() in _TRUE,
        )

    # -- inbound ---------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        """Check the signature over the timestamp and the raw body, and the timestamp's age."""
        signature = request.headers.get(SIGNATURE_HEADER, "").strip()
        stamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        if not signature or not stamp:
            raise VerificationError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        if not stamp.isdigit() or len(stamp) > 12:
            raise VerificationError(f"{TIMESTAMP_HEADER} is not unix seconds")
        expected = sign(self._secret, stamp, request.body)
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise VerificationError(f"{SIGNATURE_HEADER} does not match the body")
        age = self._clock() - int(stamp)
        if age > MAX_AGE:
            raise VerificationError(f"stale request: signed {age:.0f} s ago (limit {MAX_AGE})")
        if age < -MAX_AHEAD:
            raise VerificationError(f"request signed {-age:.0f} s in the future")

    @staticmethod
    def replay_key(request: WebhookRequest) -> str:
        """What identifies one signed request, for the gateway's replay check."""
        return request.headers.get(SIGNATURE_HEADER, "").strip().lower()

    async def parse(self, bot: str, request: WebhookRequest) -> WebhookResult:
        return WebhookResult(messages=(parse_message(bot, request.body),))

    # -- media -----------------------------------------------------------------------------

    def media_limit(self, kind: MediaKind) -> int:
        return MAX_MEDIA

    @contextlib.asynccontextmanager
    async def fetch_media(self, attachment: Attachment) -> AsyncIterator[HttpDownload]:
        """GET the attachment's URL, on public addresses only unless ``webhook-allow-private``
        (checked on every address connected to, redirects included)."""
        if not attachment.url:
            raise MediaGone("the attachment has no url")
        if self._downloads is None:
            self._downloads = media_session(
                refuse=None if self.allow_private else self._refuse, timeout=self._timeout
            )
        info = MediaInfo(
            content_type=attachment.content_type,
            size=attachment.size,
            filename=attachment.filename,
        )
        async with download(
            self._downloads, attachment.url, provider="sender", limit=MAX_MEDIA, info=info
        ) as file:
            yield file

    # -- outbound --------------------------------------------------------------------------

    async def send(self, conversation: str, part: RenderedPart) -> SendResult:
        """Post one part as a ``message`` event with an id of its own."""
        return await self.send_part(conversation, part, event_id=f"msg-{uuid.uuid4()}")

    async def send_part(
        self, conversation: str, part: RenderedPart, *, event_id: str, reply_to: str | None = None
    ) -> SendResult:
        """Post one part as a ``message`` event; ``event_id`` is the same on every retry."""
        event: dict[str, Any] = {
            "text": part.text,
            "suggestions": [{"key": b.key, "label": b.label} for b in part.buttons],
        }
        if reply_to is not None:
            event["reply_to"] = reply_to
        return await self.send_event("message", conversation, event, event_id=event_id)

    async def send_event(
        self, event: str, conversation: str, fields: Mapping[str, Any], *, event_id: str
    ) -> SendResult:
        """Post an event to the callback URL, signed now; its id is the provider id."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        payload = {
            "event": event,
            "id": event_id,
            "bot": self.bot,
            "user_id": conversation,
            "at": datetime.now(UTC).isoformat(),
            **fields,
        }
        await self._post(orjson.dumps(payload))
        return SendResult(provider_id=event_id)

    async def edit(self, conversation: str, provider_id: str, part: RenderedPart) -> None:
        raise SendRefused("generic webhook messages cannot be edited", code="edit-unsupported")

    async def close(self) -> None:
        for session in (self._session, self._downloads):
            if session is not None:
                await session.close()
        self._session = self._downloads = None

    def _connector(self) -> aiohttp.TCPConnector:
        # The guard sees each address about to be connected to (after DNS), so a name
        # cannot resolve its way past it.
        if self.allow_private:
            return aiohttp.TCPConnector()
        return aiohttp.TCPConnector(socket_factory=guarded_socket_factory(self._refuse))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made inside the running loop
            self._session = aiohttp.ClientSession(
                connector=self._connector(), timeout=self._timeout, trust_env=False
            )
        return self._session

    async def _post(self, body: bytes) -> None:
        headers = signed_headers(self._secret, body, now=self._clock())
        try:
            async with self._client().post(
                self.callback_url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = _seconds(response.headers.get("Retry-After"))
                await response.read()
        except aiohttp.ClientConnectorError as e:
            if _guard_refused(e):
                raise SendRefused(
                    f"webhook-callback-url {self.callback_url} is on a private, loopback or"
                    " reserved address (set webhook-allow-private,true to allow it)",
                    code="private-address",
                ) from e
            raise transport_error("callback", e) from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise transport_error("callback", e) from e
        if 200 <= status < 300:
            return
        raise callback_error(status, retry_after)


def callback_error(status: int, retry_after: float | None) -> SendError:
    """The :class:`SendError` for a callback's non-2xx answer."""
    if status == 429:
        return RateLimited("callback answered 429", code="429", retry_after=retry_after)
    if status >= 500 or status == 408:
        return ProviderUnavailable(
            f"callback answered {status}", code=str(status), retry_after=retry_after
        )
    return SendRefused(f"callback answered {status}", code=str(status))


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


def _guard_refused(error: aiohttp.ClientConnectorError) -> bool:
    cause: BaseException | None = error.os_error
    while cause is not None:
        if isinstance(cause, ForbiddenAddress) or "private or reserved address" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def parse_message(bot: str, body: bytes) -> InboundMessage:
    """The message of a verified body; :class:`PayloadError` saying what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PayloadError(f"the body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object")
    user_id = _identifier(data, "user_id")
    message_id = _identifier(data, "message_id")
    text = data.get("text", "")
    if not isinstance(text, str):
        raise PayloadError("'text' must be a string")
    if len(text) > MAX_TEXT:
        raise PayloadError(f"'text' is longer than {MAX_TEXT} characters")
    attachments = _attachments(data.get("attachments"))
    if not text.strip() and not attachments:
        raise PayloadError("a message needs 'text' or 'attachments'")
    return InboundMessage(
        channel=NAME,
        bot=bot,
        conversation=user_id,
        sender=user_id,
        external_id=message_id,
        text=text,
        attachments=attachments,
    )


def _identifier(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"'{key}' must be a non-empty string")
    if len(value) > MAX_ID:
        raise PayloadError(f"'{key}' is longer than {MAX_ID} characters")
    return value.strip()


def _attachments(raw: Any) -> tuple[Attachment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
        raise PayloadError(f"'attachments' must be a list of at most {MAX_ATTACHMENTS}")
    out: list[Attachment] = []
    for item in raw:
        if not isinstance(item, dict):
            raise PayloadError("each attachment must be an object")
        try:
            kind = MediaKind(str(item.get("kind", item.get("type", ""))).lower())
        except ValueError:
            kinds = ", ".join(k.value for k in MediaKind)
            raise PayloadError(f"an attachment's 'kind' must be one of {kinds}") from None
        url = item.get("url")
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise PayloadError("an attachment needs an http or https 'url'")
        out.append(
            Attachment(
                kind=kind,
                url=url,
                content_type=_optional_text(item, "content_type"),
                filename=_optional_text(item, "filename"),
                caption=_optional_text(item, "caption"),
            )
        )
    return tuple(out)


def _optional_text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"an attachment's '{key}' must be a string")
    return value
