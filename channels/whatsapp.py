"""The WhatsApp Cloud API (Meta) adapter: webhook verification, parsing and sends.

Plain HTTP on aiohttp against the Graph API (see ``DELIVERY_NOTES_WHATSAPP.md``
for why not pywa). One adapter per bot, i.e. per business phone number.

Inbound: ``GET`` is Meta's subscription handshake, ``POST`` a batch of
``entry[].changes[].value`` objects carrying ``messages[]`` and ``statuses[]``.
A message's ``conversation`` and ``sender`` are the user's ``wa_id`` (digits,
no ``+``), its ``external_id`` the ``wamid``.

Outbound: text, reply buttons, lists and templates through
``POST {api_url}/{phone-number-id}/messages``; every provider error is mapped
to a :class:`~channels.base.SendError` in :func:`send_error`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

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
    MediaUnavailable,
    OutcomeUnknown,
    PayloadError,
    ProviderUnavailable,
    RateLimited,
    RenderedPart,
    SendError,
    SendRefused,
    SendResult,
    StatusUpdate,
    StreamMode,
    Suggestion,
    TextFormat,
    VerificationError,
    WebhookRequest,
    WebhookResponse,
    WebhookResult,
    WindowClosed,
)
from channels.http_transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    client_timeout,
    transport_error,
)
from channels.media_http import HttpDownload, MiB, download, media_session
from channels.outbound_media import OutboundFile

log = logging.getLogger(__name__)

NAME = "whatsapp"
DEFAULT_API_URL = "https://graph.facebook.com/v23.0"

MAX_TEXT = 4096
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_ID = 256
MAX_LIST_ROWS = 10
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_LIST_BUTTON = 20
MAX_INTERACTIVE_BODY = 1024

CAPABILITIES = Capabilities(
    max_text_length=MAX_TEXT,
    text_format=TextFormat.WHATSAPP,
    can_edit=False,
    stream_mode=StreamMode.PARAGRAPHS,
    max_buttons=MAX_BUTTONS,
    max_button_label=MAX_BUTTON_TITLE,
    max_list_rows=MAX_LIST_ROWS,
    max_list_row_title=MAX_ROW_TITLE,
    media_kinds=frozenset(MediaKind),
    messages_per_second=80.0,
    chat_messages_per_second=1 / 6,
)

# Graph API error codes (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes)
# with the wait, in seconds, used when the answer carries no Retry-After.
_RATE_LIMIT_CODES: dict[int, float] = {
    4: 60.0,  # application request limit
    80007: 60.0,  # WhatsApp Business Account rate limit
    130429: 1.0,  # throughput of the number (80 messages/s by default)
    131048: 60.0,  # spam rate limit
    131056: 6.0,  # pair rate: one message per ~6 s to the same user
    133016: 60.0,  # registration/deregistration rate limit
}
_UNAVAILABLE_CODES = frozenset({1, 2, 131000, 131016, 131057})
_WINDOW_CLOSED = 131047
_DEFAULT_RETRY_AFTER = 1.0

# What the Cloud API delivers of each kind (Meta's media limits).
MEDIA_LIMITS = {
    MediaKind.IMAGE: 5 * MiB,
    MediaKind.AUDIO: 16 * MiB,
    MediaKind.VIDEO: 16 * MiB,
    MediaKind.DOCUMENT: 100 * MiB,
}

MAX_CAPTION = 1024
# The Cloud API's message type for each file type it takes; anything else is a document.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
_AUDIO_TYPES = frozenset(
    {"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg", "audio/opus"}
)
_VIDEO_TYPES = frozenset({"video/mp4", "video/3gpp"})
_LIMITS = {
    "image": MEDIA_LIMITS[MediaKind.IMAGE],
    "audio": MEDIA_LIMITS[MediaKind.AUDIO],
    "video": MEDIA_LIMITS[MediaKind.VIDEO],
    "document": MEDIA_LIMITS[MediaKind.DOCUMENT],
}

_MEDIA_KINDS = {
    "image": MediaKind.IMAGE,
    "audio": MediaKind.AUDIO,
    "voice": MediaKind.AUDIO,
    "video": MediaKind.VIDEO,
    "document": MediaKind.DOCUMENT,
}


class WhatsAppChannel:
    """One bot's WhatsApp business number on the Cloud API.

    ``edit`` is not supported by WhatsApp: it raises :class:`SendRefused`, so a
    caller that ignored ``can_edit`` meets the same error path as any refused send.
    """

    name = NAME
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str,
        app_secret: str,
        verify_token: str | None = None,
        api_url: str = DEFAULT_API_URL,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._token = access_token
        self._phone_number_id = phone_number_id
        self._app_secret = app_secret.encode()
        self._verify_token = verify_token or None
        self._api_url = api_url.rstrip("/")
        self._messages_url = f"{self._api_url}/{phone_number_id}/messages"
        self._timeout = client_timeout(connect=connect_timeout, read=read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._downloads: aiohttp.ClientSession | None = None  # users' files, read in small pieces

    @classmethod
    def from_config(
        cls,
        bot: str,
        config: Mapping[str, str],
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> WhatsAppChannel:
        """Build the adapter from a bot's ``config.csv`` rows.

        Raises :class:`ChannelNotConfigured` naming every missing key: without
        the app secret no webhook could be authenticated, so the channel stays off.
        """
        values = {key: config.get(key, "").strip() for key in _CONFIG_KEYS}
        missing = [key for key in _REQUIRED_KEYS if not values[key]]
        if missing:
            raise ChannelNotConfigured(f"bot {bot!r}: WhatsApp needs {', '.join(missing)}")
        return cls(
            access_token=values["whatsapp-api-key"],
            phone_number_id=values["whatsapp-phone-number-id"],
            app_secret=values["whatsapp-app-secret"],
            verify_token=values["whatsapp-verify-token"] or None,
            api_url=values["whatsapp-api-url"] or DEFAULT_API_URL,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    # -- inbound ---------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        """Check the subscription handshake (``GET``) or the body's signature (``POST``).

        ``X-Hub-Signature-256`` is ``sha256=`` and the hex HMAC-SHA256 of the raw
        body under the app secret, compared in constant time.
        """
        if request.method.upper() == "GET":
            self.handshake(request)
            return
        header = request.headers.get("X-Hub-Signature-256", "")
        scheme, _, signature = header.partition("=")
        if scheme.strip().lower() != "sha256" or not signature:
            raise VerificationError("missing X-Hub-Signature-256")
        expected = hmac.new(self._app_secret, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.strip().lower()):
            raise VerificationError("X-Hub-Signature-256 does not match the body")

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        """Answer Meta's ``GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``.

        The challenge is echoed when the token matches ours (constant time);
        otherwise :class:`VerificationError`, which the gateway answers with 403.
        """
        if self._verify_token is None:
            raise VerificationError("no whatsapp-verify-token is configured")
        if request.query.get("hub.mode") != "subscribe":
            raise VerificationError("hub.mode is not 'subscribe'")
        token = request.query.get("hub.verify_token", "")
        if not hmac.compare_digest(token.encode(), self._verify_token.encode()):
            raise VerificationError("hub.verify_token does not match")
        challenge = request.query.get("hub.challenge", "")
        if not challenge:
            raise VerificationError("hub.challenge is missing")
        return WebhookResponse(body=challenge.encode())

    async def parse(self, bot: str, request: WebhookRequest) -> WebhookResult:
        """The messages and statuses of a verified webhook; the challenge of a handshake."""
        if request.method.upper() == "GET":
            return WebhookResult(response=self.handshake(request))
        return parse_notification(bot, _decode_object(request.body), self._phone_number_id)

    # -- media -----------------------------------------------------------------

    def media_limit(self, kind: MediaKind) -> int:
        return MEDIA_LIMITS[kind]

    @contextlib.asynccontextmanager
    async def fetch_media(self, attachment: Attachment) -> AsyncIterator[HttpDownload]:
        """``GET /{media-id}`` for the file's URL (it expires in minutes), then the file,
        both with the access token; Meta's SHA-256 of the file comes along to check."""
        if not attachment.provider_id:
            raise MediaGone("WhatsApp: the attachment has no media id")
        session = self._client()
        auth = {"Authorization": f"Bearer {self._token}"}
        lookup = f"{self._api_url}/{quote(attachment.provider_id, safe='')}"
        try:
            async with session.get(
                lookup, headers=auth, params={"phone_number_id": self._phone_number_id}
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as e:
            raise MediaUnavailable(f"WhatsApp: media lookup failed ({type(e).__name__})") from e
        if status >= 300:
            error = send_error(status, body)
            if error.retriable:
                raise MediaUnavailable(f"media lookup: {error}")
            raise MediaGone(f"media lookup: {error}", status=status)
        try:
            media = orjson.loads(body)
            url = str(media["url"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise MediaUnavailable("WhatsApp: the media lookup answered without a url") from e
        size = media.get("file_size")
        info = MediaInfo(
            content_type=media.get("mime_type") or attachment.content_type,
            size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
            filename=attachment.filename,
            sha256=media.get("sha256") if isinstance(media.get("sha256"), str) else None,
        )
        if self._downloads is None:
            self._downloads = media_session()
        async with download(
            self._downloads,
            url,
            provider="WhatsApp",
            limit=MEDIA_LIMITS[attachment.kind],
            headers=auth,
            info=info,
        ) as file:
            yield file

    # -- outbound --------------------------------------------------------------

    async def send(self, conversation: str, part: RenderedPart) -> SendResult:
        """Send text, reply buttons (up to 3) or a list (more, or ``as_list``)."""
        return await self._post(message_payload(conversation, part))

    caption_limit = MAX_CAPTION
    fetches_by_url = False

    def file_limit(self, kind: MediaKind, content_type: str) -> int | None:
        """Meta's limit for the message type the file goes as (see :func:`media_type`)."""
        return _LIMITS[media_type(kind, content_type)]

    async def send_file(self, conversation: str, file: OutboundFile) -> SendResult:
        """Upload the file (``POST /{phone-number-id}/media``, multipart, streamed from the
        store), unless an earlier attempt did, then send the message naming its media id.
        Meta keeps an upload 30 days: a retry reuses its id."""
        media_id = file.upload_id or await self._upload(file)
        kind = media_type(file.kind, file.media_type)
        body: dict[str, Any] = {"id": media_id}
        if file.caption and kind != "audio":  # audio messages carry no caption
            body["caption"] = file.caption
        if kind == "document":
            body["filename"] = file.filename
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": conversation,
            "type": kind,
            kind: body,
        }
        await file.about_to_send()
        return await self._post(payload)

    async def _upload(self, file: OutboundFile) -> str:
        """The media id of the file, uploaded now; nothing reaches the user yet, so every
        failure of the upload is worth another try but a refusal."""
        session = self._client()
        async with file.open() as chunks:
            form = aiohttp.FormData()
            form.add_field("messaging_product", "whatsapp")
            form.add_field("type", file.media_type)
            form.add_field("file", chunks, filename=file.filename, content_type=file.media_type)
            try:
                async with session.post(
                    f"{self._api_url}/{self._phone_number_id}/media",
                    data=form,
                    headers={"Authorization": f"Bearer {self._token}"},
                ) as response:
                    body = await response.read()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as e:
                raise ProviderUnavailable(f"WhatsApp: the upload failed: {e!r}") from e
        if status >= 300:
            raise send_error(status, body, retry_after)
        try:
            media_id = str(orjson.loads(body)["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise ProviderUnavailable(f"WhatsApp answered the upload {status} without an id") from e
        if file.uploaded is not None:
            await file.uploaded(media_id)
        return media_id

    async def send_template(
        self,
        conversation: str,
        name: str,
        language: str,
        params: Sequence[str] = (),
        named: Sequence[tuple[str, str]] = (),
    ) -> SendResult:
        """Send an approved template, the only message allowed outside the 24-hour window.

        ``params`` fill the body's ``{{1}}``, ``{{2}}``… in order; ``named`` its named
        parameters.
        """
        return await self._post(template_payload(conversation, name, language, params, named))

    async def edit(self, conversation: str, provider_id: str, part: RenderedPart) -> None:
        """WhatsApp cannot edit a sent message: always :class:`SendRefused`."""
        raise SendRefused("WhatsApp messages cannot be edited", code="edit-unsupported")

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._downloads is not None:
            await self._downloads.close()
            self._downloads = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Made here, inside the running loop, not in the synchronous constructor.
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _post(self, payload: dict[str, Any]) -> SendResult:
        session = self._client()
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
        }
        try:
            async with session.post(
                self._messages_url, data=orjson.dumps(payload), headers=headers
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise transport_error("WhatsApp", e) from e
        if status >= 300:
            raise send_error(status, body, retry_after)
        try:
            data = orjson.loads(body)
            message = data["messages"][0]
            wamid = message["id"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            # Accepted with an answer we cannot read: the message may well be on its way.
            raise OutcomeUnknown(f"WhatsApp answered {status} without a message id") from e
        return SendResult(
            provider_id=str(wamid), status=str(message.get("message_status") or "accepted")
        )


_CONFIG_KEYS = (
    "whatsapp-api-key",
    "whatsapp-phone-number-id",
    "whatsapp-app-secret",
    "whatsapp-verify-token",
    "whatsapp-api-url",
)
_REQUIRED_KEYS = ("whatsapp-api-key", "whatsapp-phone-number-id", "whatsapp-app-secret")


def send_error(status: int, body: bytes, retry_after: str | None = None) -> SendError:
    """The one place a Graph API error answer becomes a :class:`SendError`.

    The error code decides first (Meta answers most errors with HTTP 400, rate
    limits included); the HTTP status decides when the code is unknown or absent.
    """
    code, message = _graph_error(body)
    text = f"WhatsApp {status}: {message or f'HTTP {status}'}"
    code_text = str(code) if code is not None else str(status)
    if status == 429 or code in _RATE_LIMIT_CODES:
        wait = _retry_after_seconds(retry_after)
        if wait is None:
            wait = _RATE_LIMIT_CODES.get(code or 0, _DEFAULT_RETRY_AFTER)
        return RateLimited(text, code=code_text, retry_after=wait)
    if code == _WINDOW_CLOSED:
        return WindowClosed(text, code=code_text)
    if code in _UNAVAILABLE_CODES or status >= 500:
        return ProviderUnavailable(text, code=code_text)
    return SendRefused(text, code=code_text)


def _graph_error(body: bytes) -> tuple[int | None, str | None]:
    """Meta's ``error.code`` and message, or ``(None, None)`` for a body that is not one
    (a proxy's HTML page, an empty answer): then the HTTP status alone decides."""
    try:
        error = orjson.loads(body)["error"]
        code = int(error["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, None
    message = str(error.get("message") or "")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return code, f"{message}: {details}" if details and details != message else message


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from Meta; the code's default is close enough
    return max(seconds, 0.0)


# -- payloads we send -------------------------------------------------------------


def media_type(kind: MediaKind, content_type: str) -> str:
    """The Cloud API message type a file goes as: an image, audio or video in a type it
    takes, else a document (a WebP, a GIF, a WAV: shown as a file to download)."""
    media = content_type.partition(";")[0].strip().lower()
    if kind is MediaKind.IMAGE and media in _IMAGE_TYPES:
        return "image"
    if kind is MediaKind.AUDIO and media in _AUDIO_TYPES:
        return "audio"
    if kind is MediaKind.VIDEO and media in _VIDEO_TYPES:
        return "video"
    return "document"


def message_payload(conversation: str, part: RenderedPart) -> dict[str, Any]:
    """The Graph API body for one rendered part.

    Titles longer than the provider allows are cut here (a row keeps its full
    label as its description) rather than refused; a count over the limits is a
    delivery bug and refused before any request leaves.
    """
    envelope: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": conversation,
    }
    if not part.buttons:
        return envelope | {"type": "text", "text": {"preview_url": False, "body": part.text}}
    if not part.text.strip():
        raise SendRefused("an interactive message needs body text", code="empty-body")
    if len(part.text) > MAX_INTERACTIVE_BODY:
        raise SendRefused(
            f"interactive body over {MAX_INTERACTIVE_BODY} characters", code="body-too-long"
        )
    if part.as_list or len(part.buttons) > MAX_BUTTONS:
        return envelope | {"type": "interactive", "interactive": _list(part)}
    return envelope | {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": part.text},
            "action": {
                "buttons": [
                    {
                        "type": "reply",
                        "reply": {"id": _key(b), "title": _cut(b.label, MAX_BUTTON_TITLE)},
                    }
                    for b in part.buttons
                ]
            },
        },
    }


def _list(part: RenderedPart) -> dict[str, Any]:
    if len(part.buttons) > MAX_LIST_ROWS:
        raise SendRefused(
            f"{len(part.buttons)} options: a list holds at most {MAX_LIST_ROWS}",
            code="too-many-rows",
        )
    rows: list[dict[str, str]] = []
    for b in part.buttons:
        row = {"id": _key(b), "title": _cut(b.label, MAX_ROW_TITLE)}
        if len(b.label) > MAX_ROW_TITLE:
            row["description"] = _cut(b.label, MAX_ROW_DESCRIPTION)
        rows.append(row)
    return {
        "type": "list",
        "body": {"text": part.text},
        "action": {
            "button": _cut(part.list_title or "Options", MAX_LIST_BUTTON),
            "sections": [{"rows": rows}],
        },
    }


def template_payload(
    conversation: str,
    name: str,
    language: str,
    params: Sequence[str] = (),
    named: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The Graph API body of a template message with text body parameters: positional
    (``{{1}}``…) or named (``{{customer}}``, with ``parameter_name``)."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    parameters: list[dict[str, str]] = [{"type": "text", "text": p} for p in params]
    parameters += [{"type": "text", "parameter_name": k, "text": v} for k, v in named]
    if parameters:
        template["components"] = [{"type": "body", "parameters": parameters}]
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": conversation,
        "type": "template",
        "template": template,
    }


def _key(suggestion: Suggestion) -> str:
    if not suggestion.key or len(suggestion.key) > MAX_ID:
        # The key comes back as the user's answer: cutting it would change the answer.
        raise SendRefused(f"button key must be 1-{MAX_ID} characters", code="bad-key")
    return suggestion.key


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- payloads we receive ----------------------------------------------------------


def _decode_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PayloadError(f"body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    return data


def parse_notification(
    bot: str, data: Mapping[str, Any], phone_number_id: str | None = None
) -> WebhookResult:
    """Read a webhook notification: every message and status of every entry and change.

    Changes for another phone number of the same Meta app (``metadata.phone_number_id``
    not ``phone_number_id``) are ignored: they belong to another bot.
    """
    if data.get("object") not in (None, "whatsapp_business_account"):
        raise PayloadError(f"not a WhatsApp notification: object={data.get('object')!r}")
    messages: list[InboundMessage] = []
    statuses: list[StatusUpdate] = []
    ignored: list[str] = []
    for entry in _list_field(data, "entry"):
        for change in _list_field(_object(entry, "entry"), "changes"):
            change = _object(change, "change")
            field = change.get("field")
            value = _object(change.get("value"), "change value")
            if field != "messages":
                ignored.append(f"field {field}")
                continue
            number = (value.get("metadata") or {}).get("phone_number_id")
            if phone_number_id is not None and number is not None and number != phone_number_id:
                ignored.append(f"phone number {number}")
                continue
            contacts = {
                str(c.get("wa_id")): c
                for c in _list_field(value, "contacts")
                if isinstance(c, dict)
            }
            for raw in _list_field(value, "messages"):
                message = _object(raw, "message")
                parsed = _message(bot, message, contacts.get(str(message.get("from"))))
                if isinstance(parsed, InboundMessage):
                    messages.append(parsed)
                else:
                    ignored.append(parsed)
            statuses.extend(_status(_object(s, "status")) for s in _list_field(value, "statuses"))
            for error in _list_field(value, "errors"):
                # Webhook-level errors (e.g. an unsupported message): for the log only.
                if isinstance(error, dict):
                    ignored.append(f"error {error.get('code')}: {error.get('title')}")
    return WebhookResult(messages=tuple(messages), statuses=tuple(statuses), ignored=tuple(ignored))


def _message(
    bot: str, message: Mapping[str, Any], contact: Mapping[str, Any] | None
) -> InboundMessage | str:
    wamid = _string(message, "id")
    sender = _string(message, "from")
    kind = _string(message, "type")
    text = ""
    attachments: tuple[Attachment, ...] = ()
    if kind == "text":
        text = _string(_object(message.get("text"), "text"), "body")
    elif kind == "interactive":
        interactive = _object(message.get("interactive"), "interactive")
        reply_type = interactive.get("type")
        if reply_type not in ("button_reply", "list_reply"):
            return f"interactive {reply_type}"
        # The reply id is the key of the suggestion we sent: the answer the dialog expects.
        text = _string(_object(interactive.get(reply_type), reply_type), "id")
    elif kind == "button":
        button = _object(message.get("button"), "button")
        text = str(button.get("payload") or button.get("text") or "")
    elif kind in _MEDIA_KINDS:
        media = _object(message.get(kind), kind)
        caption = media.get("caption")
        text = str(caption or "")
        attachments = (
            Attachment(
                kind=_MEDIA_KINDS[kind],
                content_type=media.get("mime_type"),
                provider_id=_string(media, "id"),
                filename=media.get("filename"),
                caption=caption,
            ),
        )
    else:
        # sticker, reaction, location, contacts, order, system, unsupported…
        return kind
    raw: dict[str, Any] = {"message": dict(message)}
    if contact is not None:
        raw["contact"] = dict(contact)
    return InboundMessage(
        channel=NAME,
        bot=bot,
        conversation=sender,
        sender=sender,
        external_id=wamid,
        text=text,
        attachments=attachments,
        received_at=_timestamp(message.get("timestamp")) or datetime.now(UTC),
        raw=raw,
    )


def _status(status: Mapping[str, Any]) -> StatusUpdate:
    errors = status.get("errors") or []
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    return StatusUpdate(
        provider_id=_string(status, "id"),
        status=_string(status, "status"),
        error_code=str(code) if code is not None else None,
        error_message=first.get("title") or first.get("message"),
        at=_timestamp(status.get("timestamp")),
        conversation=status.get("recipient_id"),
    )


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be an object")
    return value


def _list_field(data: Mapping[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{name!r} must be a list")
    return value


def _string(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"field {name!r} must be a non-empty string")
    return value
