"""``SEND FILE TO recipient, file[, caption]``, as General Bots spells it.

The recipient is the user of this conversation (their user id, the conversation's id, or
``channel:id`` naming it), or anyone ``TALK TO`` reaches (see :mod:`pipeline.proactive`).
The file is found and kept by :class:`~pipeline.outbound_files.OutboundFiles`; to this
conversation it is a reply of the turn (inline in the web widget, in the outbox for the
provider channels), to anyone else a proactive message committed with the turn, or, in a
scheduled job, written at once under a key a rerun finds. The keyword gives no value, as
General Bots' does not; a file that cannot be sent is the dialog's error (General Bots'
``Failed to send file: …``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from basic.errors import ScriptError
from channels.base import OutboundMessage
from pipeline.errors import TurnRejected
from pipeline.outbound_files import FileNotSendable, OutboundFiles
from pipeline.proactive import Recipient
from pipeline.turn import Turn

log = logging.getLogger(__name__)

KEYWORD = "SEND FILE TO"
WEB = "web"


async def send_file_to(
    turn: Turn, files: OutboundFiles, recipient: str, file: Any, caption: str, *, sequence: int
) -> None:
    """Send ``file`` (see the module's doc); ``sequence`` numbers the turn's proactive sends
    (the idempotency key of a scheduled job's row)."""
    to = await _recipient(turn, recipient)
    try:
        attachment = await files.attachment(turn.bot, to.channel, to.conversation, file, caption)
    except FileNotSendable as e:
        log.warning("bot %s: %s %s: %s", turn.bot.name, KEYWORD, recipient, e)
        raise ScriptError(f"{KEYWORD}: Failed to send file: {e}") from e
    message = turn.message
    if (to.channel, to.conversation) == (message.channel, message.conversation):
        if to.channel == WEB and files.urls is not None and attachment.key is not None:
            url = await files.urls.url(
                attachment.key, filename=attachment.filename, content_type=attachment.content_type
            )
            attachment = dataclasses.replace(attachment, url=url)
        await turn.say_file(caption, attachment)
        return
    sender = turn.services.proactive
    assert sender is not None, "_recipient only names others with proactive messages"
    outbound = OutboundMessage(
        channel=to.channel,
        bot=turn.bot.name,
        conversation=to.conversation,
        text=caption,
        attachments=(attachment,),
    )
    if turn.claim is not None:  # committed with the turn, or not at all
        turn.talk_to.append(outbound)
        return
    key = f"send-file:{message.external_id}:{sequence}"[:255]
    await sender.queue_message(outbound, origin="talk-to", idempotency_key=key)


async def _recipient(turn: Turn, recipient: str) -> Recipient:
    """Who ``recipient`` names: this conversation's user, or whom TALK TO would reach."""
    message = turn.message
    who = str(recipient).strip()
    session = turn.session
    own = {message.conversation, f"{message.channel}:{message.conversation}"}
    if session is not None:
        own.add(session.user_id)
    if who in own:
        return Recipient(message.channel, message.conversation)
    sender = turn.services.proactive
    if sender is None:
        raise ScriptError(
            f"{KEYWORD} {who!r}: only this conversation's user can be sent files here"
            " (proactive messages are off)"
        )
    try:
        to = await sender.parse(turn.bot.name, who)
    except TurnRejected as e:
        raise ScriptError(f"{KEYWORD} {who!r}: {e.message}") from e
    return to
