"""Normalized messages and the contract every channel adapter implements.

Every provider's payload becomes an :class:`InboundMessage`; every reply the
pipeline produces is an :class:`OutboundMessage`. Adapters declare what their
provider can do in :class:`Capabilities` so delivery can degrade gracefully
(long text split, buttons turned into text, streaming turned into one message).

This module imports nothing of ours: every other package may depend on it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable


class MediaKind(enum.StrEnum):
    """The kinds of media a message can carry."""

    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A media item on a message: a provider URL or id, or a file we hold (``key``, the
    blob store's key of a file a bot sends)."""

    kind: MediaKind
    content_type: str | None = None
    url: str | None = None
    provider_id: str | None = None
    filename: str | None = None
    size: int | None = None
    caption: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A quick-reply button: ``key`` is what is sent back, ``label`` what is shown."""

    key: str
    label: str


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message from a user, whatever channel it came from.

    ``conversation`` identifies the chat on the channel (a phone number, a
    Telegram chat id, a web user id); together with ``channel`` and ``bot`` it
    keys ordering and sessions. ``external_id`` is the provider's message id,
    used to drop redelivered webhooks.
    """

    channel: str
    bot: str
    conversation: str
    sender: str
    external_id: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    received_at: datetime = field(default_factory=_now)
    session_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def conversation_key(self) -> str:
        """The key that orders this conversation's messages across instances."""
        return f"{self.bot}:{self.channel}:{self.conversation}"


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """A provider-approved template (WhatsApp's), the only message a provider lets a bot
    send outside its window: its name, language and body parameters, positional
    (``{{1}}``, ``{{2}}``…) or named (``{{customer}}``)."""

    name: str
    language: str
    params: tuple[str, ...] = ()
    named: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PlayerOptions:
    """How a player shows its file (``PLAY … WITH OPTIONS "autoplay,loop,start=10"``):
    General Bots' options; ``start`` and ``end`` in seconds, ``width`` and ``height`` in
    pixels. A channel uses those it can and ignores the rest."""

    autoplay: bool = False
    loop: bool = False
    fullscreen: bool = False
    muted: bool = False
    controls: bool = True
    start: float | None = None
    end: float | None = None
    width: int | None = None
    height: int | None = None
    theme: str | None = None
    page: int | None = None
    slide: int | None = None
    zoom: float | None = None


@dataclass(frozen=True, slots=True)
class Player:
    """A media player a dialog opens (``PLAY``) or closes (``STOP``) where a channel has one
    (the web widget); the file it plays rides on the message as its attachment, or, for a
    page it cannot play (a video site), ``url`` names it.

    ``content_type`` is General Bots' kind of content (``video``, ``audio``, ``image``,
    ``pdf``, ``document``, ``presentation``, ``spreadsheet``, ``code``, ``markdown``,
    ``html``, ``iframe``, ``unknown``)."""

    action: str  # "play" or "stop"
    id: str = ""
    content_type: str = "unknown"
    title: str = ""
    url: str | None = None
    options: PlayerOptions = field(default_factory=PlayerOptions)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One reply to deliver to a conversation; with ``template``, that template is sent
    (``text`` then says what it is, for the history and the operator)."""

    channel: str
    bot: str
    conversation: str
    text: str
    suggestions: tuple[Suggestion, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    template: TemplateRef | None = None
    player: Player | None = None  # PLAY / STOP, for a channel with a player (the web)


class TextFormat(enum.StrEnum):
    """The formatting a channel's provider renders; delivery converts the bots' markdown to it."""

    MARKDOWN = "markdown"  # passed through (the web widget renders it)
    TELEGRAM_HTML = "telegram-html"  # Telegram's HTML subset, parse_mode=HTML
    WHATSAPP = "whatsapp"  # *bold* _italic_ ~strike~ ```mono```
    PLAIN = "plain"  # SMS: no formatting at all


class StreamMode(enum.StrEnum):
    """How a reply that arrives as deltas reaches the user."""

    DELTAS = "deltas"  # every delta as it comes (web)
    EDIT = "edit"  # one message edited in place, throttled (Telegram)
    PARAGRAPHS = "paragraphs"  # whole messages cut at paragraph edges (WhatsApp, SMS)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel's provider allows; delivery adapts replies to it.

    Rates are in messages per second; ``None`` means no limit to pace under.
    ``max_buttons`` buttons with labels of ``max_button_label`` fit on one
    message; more options become a list of at most ``max_list_rows`` rows
    (``0``: no lists, the options are written out as text).
    """

    max_text_length: int
    text_format: TextFormat = TextFormat.PLAIN
    can_edit: bool = False
    stream_mode: StreamMode = StreamMode.PARAGRAPHS
    min_edit_interval: float = 1.0
    max_buttons: int = 0
    max_button_label: int = 0
    max_list_rows: int = 0
    max_list_row_title: int = 0
    media_kinds: frozenset[MediaKind] = frozenset()
    messages_per_second: float | None = None  # across every chat of one sender (bot, number)
    chat_messages_per_second: float | None = None  # to one chat

    @property
    def can_stream(self) -> bool:
        return self.stream_mode is not StreamMode.PARAGRAPHS


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider's HTTP request as an adapter sees it, free of any web framework.

    ``url`` is the public URL the provider called (Twilio signs it); ``headers``
    are matched without regard to case by the gateway's mapping.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What to answer the provider when it is not a plain empty 200."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A provider's report on a message we sent (sent, delivered, read, failed, ...)."""

    provider_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    at: datetime | None = None
    conversation: str | None = None
    channel: str | None = None  # when one webhook serves several channels (Twilio)


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What one webhook request carried.

    ``ignored`` names what was acknowledged without processing (a sticker, a
    poll), for the log; ``response`` overrides the empty 200.
    """

    messages: tuple[InboundMessage, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    ignored: tuple[str, ...] = ()
    response: WebhookResponse | None = None


@dataclass(frozen=True, slots=True)
class RenderedPart:
    """One provider send, made by the delivery layer from a reply.

    ``text`` is already in the channel's :class:`TextFormat` and within its
    length limit. ``buttons`` fit the channel's limits; ``as_list`` asks for a
    list (WhatsApp's interactive list) instead of reply buttons.
    """

    text: str
    text_format: TextFormat
    buttons: tuple[Suggestion, ...] = ()
    as_list: bool = False
    list_title: str = "Options"


@dataclass(frozen=True, slots=True)
class SendResult:
    """A send the provider accepted: its id for the message, and its status."""

    provider_id: str
    status: str = "sent"


class ChannelError(Exception):
    """Root of the errors a channel adapter raises."""


class VerificationError(ChannelError):
    """A request failed signature or token verification."""


class PayloadError(ChannelError):
    """A request body is not a payload this channel understands."""


class ChannelNotConfigured(ChannelError):
    """A bot's configuration lacks what the channel needs (a token, a secret): it stays off."""


class SendError(ChannelError):
    """A send did not succeed. ``retriable`` says whether sending again is safe and useful.

    ``retry_after`` is the provider's requested wait in seconds, when it gave one;
    ``code`` is the provider's error code, for the operator.
    """

    retriable: bool = False

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class RateLimited(SendError):
    """The provider refused for flood control (HTTP 429, WhatsApp 130429/131056)."""

    retriable = True


class ProviderUnavailable(SendError):
    """The provider failed (5xx) or could not be reached before the request left."""

    retriable = True


class OutcomeUnknown(SendError):
    """The request left but no answer came (a timeout): the message may have been sent.

    Never sent again automatically: the operator sees it as unknown.
    """


class SendRefused(SendError):
    """The provider refused this message for good (bad request, blocked by the user)."""


class WindowClosed(SendRefused):
    """WhatsApp: outside the 24-hour customer-service window only templates may be sent."""


class MediaError(ChannelError):
    """A user's attachment could not be fetched from the provider.

    ``retriable``: the provider failed (5xx, timeout, connection lost), so the turn is
    run again later; otherwise the user is told, and the turn goes on without the file.
    """

    retriable: bool = False


class MediaUnavailable(MediaError):
    """The provider could not be reached or failed (5xx, 429, timeout, a cut download)."""

    retriable = True


class MediaGone(MediaError):
    """The provider no longer has the file or will not give it (404, an expired URL, 4xx)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MediaRefused(MediaError):
    """We will not fetch it: a private address, a URL that is not the provider's."""


class MediaTooLarge(MediaError):
    """The provider says the file is over the channel's limit (``limit`` bytes): not
    downloaded. A file that only shows its size while streaming is cut off by the store."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What the provider says of a file before its bytes: each field ``None`` if unsaid.

    ``sha256`` is the provider's digest of the file (WhatsApp gives one): the bytes
    received are checked against it.
    """

    content_type: str | None = None
    size: int | None = None
    filename: str | None = None
    sha256: str | None = None


class MediaDownload(Protocol):
    """A file being downloaded from the provider."""

    @property
    def info(self) -> MediaInfo: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive; a transport failure is :class:`MediaUnavailable`."""


@runtime_checkable
class MediaSource(Protocol):
    """A channel whose users' attachments can be fetched: the provider's URLs and ids
    expire, so the pipeline fetches each one once and keeps it in its own storage."""

    def media_limit(self, kind: MediaKind) -> int:
        """The largest file of ``kind`` the provider delivers, in bytes."""

    def fetch_media(self, attachment: Attachment) -> AbstractAsyncContextManager[MediaDownload]:
        """Open the attachment's download (``async with``); :class:`MediaError` subclasses
        on entering when the provider refuses or fails."""


@runtime_checkable
class Channel(Protocol):
    """The contract of a provider channel adapter, one instance per bot.

    An adapter speaks its provider's wire format and nothing else: splitting,
    formatting, pacing, retries and the outbox live in the delivery layer.
    """

    name: str
    capabilities: Capabilities

    def verify(self, request: WebhookRequest) -> None:
        """Raise :class:`VerificationError` unless the request is authentic."""

    async def parse(self, bot: str, request: WebhookRequest) -> WebhookResult:
        """The messages and status updates of a verified request; :class:`PayloadError`
        if malformed."""

    async def send(self, conversation: str, part: RenderedPart) -> SendResult:
        """Send one part; raise a :class:`SendError` subclass when it did not succeed."""

    async def edit(self, conversation: str, provider_id: str, part: RenderedPart) -> None:
        """Replace the text of a message sent before (channels with ``can_edit``)."""

    async def close(self) -> None:
        """Release the adapter's HTTP clients."""
