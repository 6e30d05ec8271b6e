"""Normalized messages and the contract every channel adapter implements.

Every provider's payload becomes an :class:`InboundMessage`; every reply the
pipeline produces is an :class:`OutboundMessage`. Adapters declare what their
provider can do in :class:`Capabilities` so delivery can degrade gracefully
(long text split, buttons turned into text, streaming turned into one message).

This module imports nothing of ours: every other package may depend on it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
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
    """A media item on a message: a provider URL or id, or bytes we already hold."""

    kind: MediaKind
    content_type: str | None = None
    url: str | None = None
    provider_id: str | None = None
    filename: str | None = None
    size: int | None = None
    caption: str | None = None


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
class OutboundMessage:
    """One reply to deliver to a conversation."""

    channel: str
    bot: str
    conversation: str
    text: str
    suggestions: tuple[Suggestion, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel's provider allows; delivery adapts replies to it."""

    max_text_length: int
    can_edit: bool = False
    can_stream: bool = False
    max_buttons: int = 0
    max_button_label: int = 0
    media_kinds: frozenset[MediaKind] = frozenset()
    messages_per_second: float | None = None


class ChannelError(Exception):
    """Root of the errors a channel adapter raises."""


class VerificationError(ChannelError):
    """A request failed signature or token verification."""


class PayloadError(ChannelError):
    """A request body is not a payload this channel understands."""


@runtime_checkable
class Channel(Protocol):
    """The contract of a channel adapter."""

    name: str
    capabilities: Capabilities

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`VerificationError` unless the request is authentic."""

    def parse(self, bot: str, body: bytes, headers: Mapping[str, str]) -> Sequence[InboundMessage]:
        """Turn a provider request into messages; raise :class:`PayloadError` if malformed."""

    async def send(self, message: OutboundMessage) -> None:
        """Deliver one reply through the provider."""


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters.

    Cuts prefer paragraph breaks, then line breaks, then sentence ends, then
    spaces; a word longer than the limit is cut hard.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = 0
        for separator in _SEPARATORS:
            pos = window.rfind(separator)
            if pos > 0:
                # keep sentence punctuation with its sentence; drop the whitespace
                cut = pos + len(separator.rstrip())
                break
        if cut <= 0 or cut > limit:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


_SEPARATORS = ("\n\n", "\n", ". ", "! ", "? ", " ")
