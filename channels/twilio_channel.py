"""The Twilio adapter: WhatsApp and SMS through one account, one webhook, two channels.

One Twilio account of a bot answers one webhook (``POST /webhooks/twilio/{bot}``)
for both its SMS number and its WhatsApp sender, but the two differ in what
they render, so they are two channels: ``twilio-whatsapp`` (WhatsApp
formatting) and ``twilio-sms`` (plain text). :meth:`TwilioChannel.pair_from_config`
builds both on one shared :class:`TwilioAccount` (one SDK client, one HTTP
pool); either parses the webhook the same way, and each inbound message names
its channel from the ``From`` address, so replies go back through the adapter
of that name.

A message's ``conversation`` and ``sender`` are the user's address without the
``whatsapp:`` prefix (``+15551234567``); the channel name tells the two apart,
and the WhatsApp adapter adds the prefix back when sending.

Sends go through the SDK's async client (``messages.create_async`` on
``AsyncTwilioHttpClient``), never the blocking one; every
:class:`~twilio.base.exceptions.TwilioRestException` becomes a
:class:`~channels.base.SendError` in :func:`send_error`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client

from channels.base import (
    Attachment,
    Capabilities,
    ChannelNotConfigured,
    InboundMessage,
    MediaGone,
    MediaInfo,
    MediaKind,
    MediaRefused,
    PayloadError,
    ProviderUnavailable,
    RateLimited,
    RenderedPart,
    SendError,
    SendRefused,
    SendResult,
    StatusUpdate,
    StreamMode,
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

WHATSAPP = "twilio-whatsapp"
SMS = "twilio-sms"
WHATSAPP_PREFIX = "whatsapp:"
WEBHOOK_PATH = "/webhooks/twilio/{bot}"
MAX_TEXT = 1600
DEFAULT_API_URL = "https://api.twilio.com"
# What Twilio delivers: media of 16 MB, images of 5 MB.
MEDIA_LIMITS = {
    MediaKind.IMAGE: 5 * MiB,
    MediaKind.AUDIO: 16 * MiB,
    MediaKind.VIDEO: 16 * MiB,
    MediaKind.DOCUMENT: 16 * MiB,
}

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TWIML_RESPONSE = WebhookResponse(body=EMPTY_TWIML, content_type="text/xml")

_WHATSAPP_CAPABILITIES = Capabilities(
    max_text_length=MAX_TEXT,
    text_format=TextFormat.WHATSAPP,
    can_edit=False,
    stream_mode=StreamMode.PARAGRAPHS,
    max_buttons=0,  # options are written out as text by the delivery layer
    media_kinds=frozenset(MediaKind),
    messages_per_second=10.0,
)
CAPABILITIES: dict[str, Capabilities] = {
    WHATSAPP: _WHATSAPP_CAPABILITIES,
    SMS: dataclasses.replace(
        _WHATSAPP_CAPABILITIES, text_format=TextFormat.PLAIN, media_kinds=frozenset()
    ),
}

# Twilio error codes (https://www.twilio.com/docs/api/errors) that are not plain 4xx refusals.
_RATE_LIMIT_CODES = frozenset({20429, 14107, 63018})
_WINDOW_CLOSED_CODES = frozenset({63016})  # WhatsApp: free-form outside the 24-hour window
_UNAVAILABLE_CODES = frozenset({20500, 20503})
_DEFAULT_RETRY_AFTER = 1.0


class _AsyncHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """The SDK's aiohttp client with timeouts that hold and a session made inside the loop.

    The SDK passes ``timeout=None`` on every call, which aiohttp reads as "no
    limit at all": a Twilio that never answers would hold the send forever.
    Our session carries separate connect and read limits instead, so a refused
    or slow connection and an unanswered request map to different errors.
    """

    def __init__(self, timeout: aiohttp.ClientTimeout) -> None:
        super().__init__(pool_connections=False)
        self._client_timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  # the SDK's signature
        allow_redirects: bool = False,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._client_timeout)
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        async with self._session.request(
            method.upper(),
            url,
            params=params,
            data=data,
            headers=headers,
            allow_redirects=allow_redirects,
            timeout=aiohttp.ClientTimeout(total=timeout) if timeout else self._client_timeout,
        ) as response:
            text = await response.text()
        self.logger.debug("twilio %s %s -> %s", method, url, response.status)
        return Response(response.status, text, response.headers)

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class TwilioAccount:
    """A bot's Twilio account: credentials, webhook validation and the SDK client.

    Shared by the WhatsApp and the SMS adapter of the bot; closing it closes the
    one HTTP pool they share.
    """

    def __init__(
        self,
        *,
        bot: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        whatsapp_from: str | None = None,
        api_url: str | None = None,
        public_url: str | None = None,
        trust_forwarded: bool = False,
        status_callback: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self.bot = bot
        self.account_sid = account_sid
        self.from_number = _bare(from_number)
        self.whatsapp_from = _bare(whatsapp_from or from_number)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.trust_forwarded = trust_forwarded
        self.status_callback = status_callback or (
            f"{self.public_url}{WEBHOOK_PATH.format(bot=bot)}" if self.public_url else None
        )
        self._auth_token = auth_token
        self._validator = RequestValidator(auth_token)
        self._api_url = api_url.rstrip("/") if api_url else None
        self._timeout = client_timeout(connect=connect_timeout, read=read_timeout)
        self._client: Any = None
        self._media: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(
        cls,
        bot: str,
        config: Mapping[str, str],
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> TwilioAccount:
        """Read a bot's ``config.csv`` rows; :class:`ChannelNotConfigured` names what is missing.

        The sender is General Bots' ``twilio-from-number`` (``twilio-phone-number``
        is accepted too); ``twilio-whatsapp-from-number`` sets a distinct WhatsApp
        sender. ``twilio-status-callback`` defaults to the public webhook URL.
        """

        def value(*keys: str) -> str:
            return next((v for k in keys if (v := config.get(k, "").strip())), "")

        sid = value("twilio-account-sid")
        token = value("twilio-auth-token")
        sender = value("twilio-from-number", "twilio-phone-number")
        missing = [
            key
            for key, present in (
                ("twilio-account-sid", sid),
                ("twilio-auth-token", token),
                ("twilio-from-number", sender),
            )
            if not present
        ]
        if missing:
            raise ChannelNotConfigured(f"bot {bot!r}: Twilio needs {', '.join(missing)}")
        return cls(
            bot=bot,
            account_sid=sid,
            auth_token=token,
            from_number=sender,
            whatsapp_from=value("twilio-whatsapp-from-number") or None,
            api_url=value("twilio-api-url") or None,
            public_url=value("twilio-public-url") or None,
            trust_forwarded=value("twilio-trust-forwarded").lower() in ("true", "yes", "1", "on"),
            status_callback=value("twilio-status-callback") or None,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    # -- inbound ---------------------------------------------------------------

    def signed_url(self, request: WebhookRequest) -> str:
        """The URL Twilio signed: what it called, not what reached us behind a proxy.

        ``twilio-public-url`` wins (the request's path and query are appended to
        it, unless it already ends with that path); else, only when
        ``twilio-trust-forwarded`` is on, ``X-Forwarded-Proto``/``-Host``; else the
        URL the gateway saw.
        """
        seen = urlsplit(request.url)
        if self.public_url is not None:
            base = urlsplit(self.public_url)
            path = base.path if base.path.endswith(seen.path) else base.path + seen.path
            return urlunsplit((base.scheme, base.netloc, path, seen.query, ""))
        if self.trust_forwarded:
            proto = _first(request.headers.get("X-Forwarded-Proto")) or seen.scheme
            host = _first(request.headers.get("X-Forwarded-Host")) or seen.netloc
            return urlunsplit((proto, host, seen.path, seen.query, ""))
        return request.url

    def verify(self, request: WebhookRequest) -> None:
        """Check ``X-Twilio-Signature`` with the SDK's :class:`RequestValidator`."""
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            raise VerificationError("missing X-Twilio-Signature")
        algorithm = get_signature_algorithm(
            request.headers.get("X-Twilio-Webhooks-Signature-Settings")
        )
        try:
            params = dict(_form(request.body))
        except PayloadError as e:
            raise VerificationError(f"cannot check the signature: {e}") from e
        if not self._validator.validate(self.signed_url(request), params, signature, algorithm):
            raise VerificationError("X-Twilio-Signature does not match the URL and parameters")

    async def parse(self, bot: str, request: WebhookRequest) -> WebhookResult:
        """An inbound message or a status callback; every answer is empty TwiML."""
        return parse_form(bot, dict(_form(request.body)))

    # -- media -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def fetch_media(self, attachment: Attachment) -> AsyncIterator[HttpDownload]:
        """GET a ``MediaUrlN`` with the account's credentials (HTTP basic auth).

        The credentials go only to the account's API origin (``api.twilio.com``, or
        ``twilio-api-url``); Twilio answers with a redirect to its CDN, which aiohttp
        follows without them (it drops ``Authorization`` on a change of origin).
        """
        url = attachment.url or ""
        api = urlsplit(self._api_url or DEFAULT_API_URL)
        given = urlsplit(url)
        if (given.scheme, given.netloc) != (api.scheme, api.netloc):
            raise MediaRefused(f"Twilio: a MediaUrl off {api.netloc} is not fetched")
        if not given.path.startswith(f"/2010-04-01/Accounts/{self.account_sid}/"):
            raise MediaGone("Twilio: the MediaUrl is not of this account's messages")
        if self._media is None:
            self._media = media_session()
        auth = {"Authorization": aiohttp.encode_basic_auth(self.account_sid, self._auth_token)}
        async with download(
            self._media,
            url,
            provider="Twilio",
            limit=MEDIA_LIMITS[attachment.kind],
            headers=auth,
            info=MediaInfo(content_type=attachment.content_type, filename=attachment.filename),
        ) as file:
            yield file

    # -- outbound --------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The SDK client on the async HTTP client, made on first use (inside the loop)."""
        if self._client is None:
            client = Client(
                self.account_sid, self._auth_token, http_client=_AsyncHttpClient(self._timeout)
            )
            if self._api_url is not None:
                client.api.base_url = self._api_url
                # TWILIO_EDGE/TWILIO_REGION in the environment would rewrite the host.
                client.edge = client.region = None
            self._client = client
        return self._client

    async def create_message(
        self, *, from_: str, to: str, body: str, media_url: str | None = None
    ) -> SendResult:
        """``POST …/Messages.json`` via ``create_async`` (with ``MediaUrl`` for a file Twilio
        fetches from us); errors mapped by :func:`send_error`."""
        media = {"media_url": [media_url]} if media_url is not None else {}
        try:
            message = await self.client.messages.create_async(
                from_=from_,
                to=to,
                body=body,
                **media,
                **({"status_callback": self.status_callback} if self.status_callback else {}),
            )
        except (TwilioRestException, TwilioServiceException) as e:
            raise send_error(e) from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise transport_error("Twilio", e) from e
        return SendResult(provider_id=str(message.sid), status=str(message.status or "queued"))

    async def close(self) -> None:
        """Close the SDK's HTTP session; safe to call from both adapters."""
        if self._client is not None:
            await self._client.http_client.close()
            self._client = None
        if self._media is not None:
            await self._media.close()
            self._media = None


class TwilioChannel:
    """One of a bot's two Twilio channels, ``twilio-whatsapp`` or ``twilio-sms``.

    ``edit`` is not supported: it raises :class:`SendRefused`, so a caller that
    ignored ``can_edit`` meets the same error path as any refused send.
    """

    def __init__(self, account: TwilioAccount, name: str) -> None:
        if name not in CAPABILITIES:
            raise ValueError(f"unknown Twilio channel {name!r}")
        self.account = account
        self.name = name
        self.capabilities = CAPABILITIES[name]

    @classmethod
    def from_config(
        cls, bot: str, config: Mapping[str, str], *, name: str = WHATSAPP, **options: float
    ) -> TwilioChannel:
        """One channel of the bot's account (``twilio-whatsapp`` unless ``name`` says)."""
        return cls(TwilioAccount.from_config(bot, config, **options), name)

    @classmethod
    def pair_from_config(
        cls, bot: str, config: Mapping[str, str], **options: float
    ) -> tuple[TwilioChannel, TwilioChannel]:
        """The WhatsApp and the SMS channel of the bot, sharing one account and client."""
        account = TwilioAccount.from_config(bot, config, **options)
        return cls(account, WHATSAPP), cls(account, SMS)

    def verify(self, request: WebhookRequest) -> None:
        """Raise :class:`VerificationError` unless Twilio signed this request."""
        self.account.verify(request)

    def media_limit(self, kind: MediaKind) -> int:
        return MEDIA_LIMITS[kind]

    def fetch_media(self, attachment: Attachment) -> contextlib.AbstractAsyncContextManager[Any]:
        """The account's download of a ``MediaUrlN`` (see :meth:`TwilioAccount.fetch_media`)."""
        return self.account.fetch_media(attachment)

    async def parse(self, bot: str, request: WebhookRequest) -> WebhookResult:
        """The message or status of a verified webhook, whichever of the two channels it is on."""
        return await self.account.parse(bot, request)

    async def send(self, conversation: str, part: RenderedPart) -> SendResult:
        """Send the part's text; buttons should have been written into it by delivery."""
        if part.buttons:
            log.warning(
                "%s has no buttons: %d options dropped (delivery should write them as text)",
                self.name,
                len(part.buttons),
            )
        if self.name == WHATSAPP:
            sender = WHATSAPP_PREFIX + self.account.whatsapp_from
            to = WHATSAPP_PREFIX + _bare(conversation)
        else:
            sender, to = self.account.from_number, _bare(conversation)
        return await self.account.create_message(from_=sender, to=to, body=part.text)

    @property
    def caption_limit(self) -> int:
        return MAX_TEXT

    fetches_by_url = True

    def file_limit(self, kind: MediaKind, content_type: str) -> int | None:
        """WhatsApp takes Twilio's media limits; SMS none here (MMS reaches only US and
        Canadian numbers): a file goes to an SMS as a link."""
        return MEDIA_LIMITS[kind] if self.name == WHATSAPP else None

    async def send_file(self, conversation: str, file: OutboundFile) -> SendResult:
        """A message with ``MediaUrl``: Twilio fetches the file from our signed URL."""
        url = await file.url()
        if url is None:
            raise SendRefused("no public URL for Twilio to fetch the file from", code="no-url")
        sender, to = self._addresses(conversation)
        await file.about_to_send()
        return await self.account.create_message(
            from_=sender, to=to, body=file.caption, media_url=url
        )

    def _addresses(self, conversation: str) -> tuple[str, str]:
        if self.name == WHATSAPP:
            return WHATSAPP_PREFIX + self.account.whatsapp_from, WHATSAPP_PREFIX + _bare(
                conversation
            )
        return self.account.from_number, _bare(conversation)

    async def edit(self, conversation: str, provider_id: str, part: RenderedPart) -> None:
        """Twilio cannot edit a sent message: always :class:`SendRefused`."""
        raise SendRefused(f"{self.name} messages cannot be edited", code="edit-unsupported")

    async def close(self) -> None:
        """Close the shared account's client."""
        await self.account.close()


def send_error(error: TwilioRestException | TwilioServiceException) -> SendError:
    """The one place a Twilio REST error becomes a :class:`SendError`.

    The error code decides first, the HTTP status when the code is not one we know.
    """
    status = int(getattr(error, "status", 0) or 0)
    raw_code = getattr(error, "code", None)
    code = int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() else None
    text = f"Twilio {status}: {getattr(error, 'msg', None) or getattr(error, 'title', '')}"
    code_text = str(code) if code is not None else str(status)
    if status == 429 or code in _RATE_LIMIT_CODES:
        # The SDK's exception carries no headers, so Retry-After cannot be read here.
        return RateLimited(text, code=code_text, retry_after=_DEFAULT_RETRY_AFTER)
    if code in _WINDOW_CLOSED_CODES:
        return WindowClosed(text, code=code_text)
    if code in _UNAVAILABLE_CODES or status >= 500:
        return ProviderUnavailable(text, code=code_text)
    # 21610 unsubscribed (STOP), 21211 invalid number, 21614 not a mobile number, 20003 auth…
    return SendRefused(text, code=code_text)


def parse_form(bot: str, form: Mapping[str, str]) -> WebhookResult:
    """Read Twilio's form: a status callback (``MessageStatus``, no ``Body``) or a message."""
    sid = form.get("MessageSid") or form.get("SmsMessageSid")
    if not sid:
        raise PayloadError("form has no MessageSid")
    if "MessageStatus" in form and "Body" not in form and "NumMedia" not in form:
        return WebhookResult(statuses=(_status(sid, form),), response=TWIML_RESPONSE)
    sender = form.get("From", "")
    if not sender:
        raise PayloadError("form has no From")
    prefix, colon, address = sender.partition(":")
    if not colon:
        channel, address = SMS, sender
    elif prefix == "whatsapp":
        channel = WHATSAPP
    else:
        # messenger:, rcs:… are other Twilio channels this bot does not speak.
        return WebhookResult(ignored=(f"channel {prefix}",), response=TWIML_RESPONSE)
    attachments = tuple(_media(form))
    # A quick-reply button answers with its payload: the key the dialog expects.
    text = form.get("ButtonPayload") or form.get("Body", "")
    if not text and not attachments:
        kind = "location" if "Latitude" in form else "empty message"
        return WebhookResult(ignored=(kind,), response=TWIML_RESPONSE)
    message = InboundMessage(
        channel=channel,
        bot=bot,
        conversation=address,
        sender=address,
        external_id=sid,
        text=text,
        attachments=attachments,
        raw=dict(form),
    )
    return WebhookResult(messages=(message,), response=TWIML_RESPONSE)


def _status(sid: str, form: Mapping[str, str]) -> StatusUpdate:
    code = form.get("ErrorCode") or None
    return StatusUpdate(
        provider_id=sid,
        status=form["MessageStatus"],
        error_code=code,
        error_message=form.get("ErrorMessage") or None,
        conversation=_bare(form["To"]) if form.get("To") else None,
        channel=WHATSAPP if form.get("To", "").startswith(WHATSAPP_PREFIX) else SMS,
    )


def _media(form: Mapping[str, str]) -> list[Attachment]:
    try:
        count = int(form.get("NumMedia") or 0)
    except ValueError as e:
        raise PayloadError(f"NumMedia is not a number: {form.get('NumMedia')!r}") from e
    media: list[Attachment] = []
    for i in range(min(count, 10)):  # Twilio sends at most 10
        url = form.get(f"MediaUrl{i}")
        if not url:
            raise PayloadError(f"NumMedia is {count} but MediaUrl{i} is missing")
        content_type = form.get(f"MediaContentType{i}") or None
        media.append(Attachment(kind=_kind(content_type), content_type=content_type, url=url))
    return media


def _kind(content_type: str | None) -> MediaKind:
    major = (content_type or "").partition("/")[0]
    return {"image": MediaKind.IMAGE, "audio": MediaKind.AUDIO, "video": MediaKind.VIDEO}.get(
        major, MediaKind.DOCUMENT
    )


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as e:
        raise PayloadError(f"body is not a form: {e}") from e


def _bare(address: str) -> str:
    return address.removeprefix(WHATSAPP_PREFIX)


def _first(header: str | None) -> str:
    return (header or "").split(",")[0].strip()
