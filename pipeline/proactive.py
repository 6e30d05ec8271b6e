"""Proactive messages: a bot writes first (``POST /api/v1/bots/{bot}/send``, BASIC ``TALK TO``).

A proactive message is an outbox row like any reply, so the delivery worker sends it under
the same rules: rendered for its channel, paced under the provider's limits, retried with
backoff, parked after the limit, WhatsApp's 24-hour window and template included. A broadcast
is many rows: paced by the same pacer, and resumed after a restart from the rows not yet sent.

A recipient is a channel and an address on it. ``TALK TO who, text`` reads ``who`` as General
Bots does (``botbasic_comms/src/keywords/universal_messaging.rs``, ``parse_recipient``):
``channel:address`` names both (``telegram:424242``, ``whatsapp:+5511999990000``); otherwise a
user id the bot has seen goes to the channel the user last talked on; and a phone number
(``+`` and digits) the bot has not seen goes to WhatsApp, General Bots' default (here the
first of the bot's WhatsApp, Twilio WhatsApp and SMS channels that is on).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from channels.base import OutboundMessage, TemplateRef
from pipeline.errors import TurnRejected
from pipeline.message_codec import outbound_to_json

MAX_TEXT = 4096 * 4
MAX_ADDRESS = 255
# Channels a proactive message can go to (the web channel has no way to reach a user who is
# not connected yet). The phone channels in the order a bare number tries them.
SENDABLE = ("telegram", "whatsapp", "twilio-whatsapp", "twilio-sms", "generic")
PHONE_CHANNELS = ("whatsapp", "twilio-whatsapp", "twilio-sms")
# Channels whose provider sends approved templates (the Cloud API's).
TEMPLATE_CHANNELS = ("whatsapp",)
_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-.]{5,20}$")


class ProactiveStore(Protocol):
    """Outbox rows with no turn, and where a user was last seen (``storage.outbox``)."""

    async def enqueue(
        self,
        bot_id: str,
        channel: str,
        conversation: str,
        message: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> tuple[int, bool]: ...

    async def last_channel(
        self, bot_id: str, user_id: str, channels: Sequence[str]
    ) -> str | None: ...


class UnknownRecipient(TurnRejected):
    def __init__(self, message: str) -> None:
        super().__init__("unknown_recipient", message, status=404)


class ChannelOff(TurnRejected):
    def __init__(self, bot: str, channel: str) -> None:
        super().__init__(
            "channel_off", f"bot {bot!r} has no {channel} channel on to send with", status=404
        )


@dataclass(frozen=True, slots=True)
class Recipient:
    channel: str
    conversation: str


@dataclass(frozen=True, slots=True)
class Queued:
    """A proactive message in the outbox: its row, and whether this call queued it (``False``:
    its idempotency key named a row queued before)."""

    outbox_id: int
    recipient: Recipient
    created: bool


def normalize_address(channel: str, address: str) -> str:
    """The conversation id the channel's inbound messages carry for ``address``: WhatsApp's
    ``wa_id`` is digits with no ``+``; Twilio's addresses are ``+E164``."""
    address = address.strip()
    if channel == "whatsapp":
        return re.sub(r"[^0-9]", "", address)
    if channel in ("twilio-whatsapp", "twilio-sms"):
        digits = re.sub(r"[^0-9]", "", address.removeprefix("whatsapp:"))
        return f"+{digits}" if digits else address
    return address


class ProactiveSender:
    """Resolves recipients and queues proactive messages for the delivery worker.

    ``channels`` says which channels of a bot are on (the hub's adapters).
    """

    def __init__(self, store: ProactiveStore, channels: Callable[[str], Collection[str]]) -> None:
        self._store = store
        self._channels = channels

    def _sendable(self, bot: str) -> list[str]:
        on = set(self._channels(bot))
        return [c for c in SENDABLE if c in on]

    async def to_address(self, bot: str, channel: str, address: str) -> Recipient:
        """A recipient named by channel and address; the channel must be on."""
        channel = channel.strip().lower()
        if channel not in SENDABLE:
            raise TurnRejected(
                "bad_request",
                f"cannot send to channel {channel!r} (one of: {', '.join(SENDABLE)})",
            )
        if channel not in self._sendable(bot):
            raise ChannelOff(bot, channel)
        conversation = normalize_address(channel, address)
        if not conversation or len(conversation) > MAX_ADDRESS:
            raise TurnRejected("bad_request", f"{address!r} is not an address on {channel}")
        return Recipient(channel, conversation)

    async def to_user(self, bot: str, user_id: str) -> Recipient:
        """The channel ``user_id`` last talked to ``bot`` on (among those on)."""
        channels = self._sendable(bot)
        channel = await self._store.last_channel(bot, user_id, channels) if channels else None
        if channel is None:
            raise UnknownRecipient(
                f"bot {bot!r} has not talked with a user {user_id!r} on a channel it can send on"
            )
        return Recipient(channel, user_id)

    async def parse(self, bot: str, who: str) -> Recipient:
        """``TALK TO``'s recipient, as General Bots reads it (see the module doc)."""
        who = who.strip()
        if not who:
            raise UnknownRecipient("TALK TO needs a recipient")
        prefix, colon, rest = who.partition(":")
        if colon and prefix.strip().lower() in SENDABLE:
            return await self.to_address(bot, prefix, rest)
        try:
            return await self.to_user(bot, who)
        except UnknownRecipient:
            if not _PHONE.match(who):
                raise
        phone = re.sub(r"[^0-9]", "", who)
        for candidate in (phone, f"+{phone}"):  # a WhatsApp wa_id, a Twilio address
            try:
                return await self.to_user(bot, candidate)
            except UnknownRecipient:
                pass
        on = self._sendable(bot)
        for channel in PHONE_CHANNELS:
            if channel in on:
                return Recipient(channel, normalize_address(channel, who))
        raise ChannelOff(bot, "whatsapp")

    @staticmethod
    def message(bot: str, recipient: Recipient, text: str) -> OutboundMessage:
        if not text.strip():
            raise TurnRejected("bad_request", "a proactive message needs text")
        if len(text) > MAX_TEXT:
            raise TurnRejected("bad_request", f"text is longer than {MAX_TEXT} characters")
        return OutboundMessage(
            channel=recipient.channel,
            bot=bot,
            conversation=recipient.conversation,
            text=text,
            reply_to=None,
        )

    @staticmethod
    def template_message(bot: str, recipient: Recipient, template: TemplateRef) -> OutboundMessage:
        """A template message; only channels with provider templates (WhatsApp) take one."""
        if recipient.channel not in TEMPLATE_CHANNELS:
            raise TurnRejected(
                "bad_request",
                f"{recipient.channel} has no message templates (only"
                f" {', '.join(TEMPLATE_CHANNELS)}): send text instead",
            )
        return OutboundMessage(
            channel=recipient.channel,
            bot=bot,
            conversation=recipient.conversation,
            text=f"[template {template.name}]",
            template=template,
        )

    async def queue_message(
        self, message: OutboundMessage, *, origin: str, idempotency_key: str | None = None
    ) -> Queued:
        """Write a message made elsewhere (one carrying a file) as its outbox row now."""
        data = outbound_to_json(message)
        data["origin"] = origin
        seq, created = await self._store.enqueue(
            message.bot,
            message.channel,
            message.conversation,
            data,
            idempotency_key=idempotency_key,
        )
        return Queued(seq, Recipient(message.channel, message.conversation), created)

    async def queue(
        self,
        bot: str,
        recipient: Recipient,
        text: str,
        *,
        origin: str,
        idempotency_key: str | None = None,
        template: TemplateRef | None = None,
    ) -> Queued:
        """Write the message's outbox row now (no turn to commit it with): ``text``, or the
        ``template``."""
        message = (
            self.message(bot, recipient, text)
            if template is None
            else self.template_message(bot, recipient, template)
        )
        data = outbound_to_json(message)
        data["origin"] = origin
        seq, created = await self._store.enqueue(
            bot,
            recipient.channel,
            recipient.conversation,
            data,
            idempotency_key=idempotency_key,
        )
        return Queued(seq, recipient, created)
