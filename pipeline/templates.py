"""BASIC's provider templates: ``SEND TEMPLATE`` and ``SEND TEMPLATE TO``, as General Bots
spells them (``botbasic_comms/src/keywords/messaging/send_template.rs`` and its book's
``keyword-send-template.md``, ``template-marketing.md``):

- ``result = SEND TEMPLATE name, recipient, channel[, variables]``: one recipient;
- ``SEND TEMPLATE name[, param, …]``: the user of this conversation (the form WhatsApp bots
  use to reopen the 24-hour window);
- ``SEND TEMPLATE TO recipient, name``: one recipient on the channel ``TALK TO`` would pick;
- ``result = SEND_TEMPLATE_TO name, recipients, channel[, variables]`` (and ``BULK_SEND``):
  many, each paced under the provider's limits by the delivery worker.

``variables`` are the template's body parameters: a map fills named parameters
(``{{customer}}``), a list positional ones (``{{1}}``…). The language is the bot's
``whatsapp-template-language`` (``en_US``). A template reaches the user in the window and
out of it; only the Cloud API's WhatsApp channel sends templates.

The answers are General Bots' maps: ``{success, template, recipient, channel, message_id,
status: "queued"}``, or ``{success: false, error}`` for a recipient or channel that cannot
take the template (logged: a bot's mistake is its result, as in General Bots); many
recipients answer ``{total, sent, failed, errors}``. A store failure is not the script's:
the turn fails and is retried.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from channels.base import TemplateRef
from pipeline.errors import TurnRejected
from pipeline.proactive import ProactiveSender, Recipient

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "en_US"
MAX_NAME = 512
MAX_PARAM = 1024  # the Cloud API's limit of a body parameter
MAX_RECIPIENTS = 10_000
# General Bots' channel names, as ours: None where this gateway has no such channel.
GB_CHANNELS: Mapping[str, str | None] = {
    "whatsapp": "whatsapp",
    "sms": "twilio-sms",
    "telegram": "telegram",
    "email": None,
    "push": None,
}


class TemplateRefused(Exception):
    """A template that cannot be sent as asked; the message says why, for the result map."""


@dataclass(frozen=True, slots=True)
class TemplateSend:
    """One template to one recipient, resolved."""

    recipient: Recipient
    template: TemplateRef
    message_id: str


def template_ref(name: Any, variables: Any, language: str) -> TemplateRef:
    """The template ``name`` with ``variables`` (a map: named; a list or scalars: positional)."""
    text = str(name).strip() if name is not None else ""
    if not text or len(text) > MAX_NAME:
        raise TemplateRefused("a template needs a name of 1 to 512 characters")
    if isinstance(variables, Mapping):
        named = tuple((str(k), _param(v)) for k, v in variables.items())
        return TemplateRef(text, language, named=named)
    values = (
        variables
        if isinstance(variables, list | tuple)
        else ([] if variables is None else [variables])
    )
    return TemplateRef(text, language, params=tuple(_param(v) for v in values))


def _param(value: Any) -> str:
    text = " ".join(str("" if value is None else value).split())
    if not text:
        raise TemplateRefused("a template parameter is empty")
    return text[:MAX_PARAM]


def language_of(config: Mapping[str, str]) -> str:
    return (config.get("whatsapp-template-language") or "").strip() or DEFAULT_LANGUAGE


def is_channel_form(args: Sequence[Any]) -> bool:
    """``SEND TEMPLATE name, recipient, channel…`` rather than ``name, param, …``."""
    return len(args) >= 3 and isinstance(args[2], str) and args[2].strip().lower() in GB_CHANNELS


async def resolve(
    sender: ProactiveSender, bot: str, recipient: Any, channel: str | None
) -> Recipient:
    """Where a template goes: an address on General Bots' ``channel``, or, with none, whom
    ``TALK TO`` would reach."""
    who = str(recipient if recipient is not None else "").strip()
    if not who:
        raise TemplateRefused("a template needs a recipient")
    try:
        if channel is None:
            return await sender.parse(bot, who)
        ours = GB_CHANNELS.get(channel.strip().lower())
        if ours is None:
            raise TemplateRefused(f"this gateway has no {channel.strip().lower()} channel")
        return await sender.to_address(bot, ours, who)
    except TurnRejected as e:
        raise TemplateRefused(e.message) from e


def prepared(
    sender: ProactiveSender, bot: str, to: Recipient, template: TemplateRef
) -> TemplateSend:
    """Checked against the channel (only WhatsApp has templates)."""
    try:
        sender.template_message(bot, to, template)
    except TurnRejected as e:
        raise TemplateRefused(e.message) from e
    return TemplateSend(to, template, f"tpl-{uuid.uuid4().hex[:16]}")


def sent_result(send: TemplateSend) -> dict[str, Any]:
    return {
        "success": True,
        "template": send.template.name,
        "recipient": send.recipient.conversation,
        "channel": send.recipient.channel,
        "message_id": send.message_id,
        "status": "queued",
    }


def refused_result(error: TemplateRefused, bot: str, keyword: str) -> dict[str, Any]:
    log.warning("bot %s: %s refused: %s", bot, keyword, error)
    return {"success": False, "error": str(error)}


def batch_result(sends: int, errors: list[str]) -> dict[str, Any]:
    return {"total": sends + len(errors), "sent": sends, "failed": len(errors), "errors": errors}


def recipients_of(value: Any) -> list[Any]:
    """``SEND_TEMPLATE_TO``'s recipients: a list of addresses, or one address."""
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_RECIPIENTS:
        raise TemplateRefused(f"more than {MAX_RECIPIENTS} recipients in one call")
    return items
