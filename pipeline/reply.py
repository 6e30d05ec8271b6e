"""The reply stage: finish the turn's output and persist the session with its history."""

from __future__ import annotations

import logging

from channels.base import OutboundMessage
from pipeline.message_codec import outbound_to_json
from pipeline.session_state import read_state
from pipeline.turn import Next, Turn
from storage.base import OutboxItem

log = logging.getLogger(__name__)

DEFAULT_FALLBACK = "Sorry, I have no answer for that."


async def reply_stage(turn: Turn, next_: Next) -> None:
    """Runs the rest of the chain, then delivers the last message and saves the turn.

    Listed first among the stages after the session so that whatever the later
    stages produced is flushed and saved in one place. When nothing answered,
    the bot's ``Not Understood Message`` (config.csv) is sent so the user is
    never left without a reply — unless a dialog (or a tool the model called) now waits for
    the user's answer (it took the message and chose to say nothing), or a person has the
    conversation (the bot is silent then). A turn that transferred the conversation to a
    person and said nothing tells the user where they stand in the queue.
    """
    await next_(turn)
    state = read_state(turn.session) if turn.session is not None else None
    waiting = state is not None and (state.dialog is not None or state.pending_tool is not None)
    if not turn.answered and not turn.held:
        if turn.transfer_result is not None:
            await turn.say(turn.transfer_result.message)
        elif not waiting:
            fallback = turn.bot.package.config.get("not-understood-message") or DEFAULT_FALLBACK
            await turn.say(fallback)
    await turn.flush()
    turn.record_leftover_tokens()
    session = turn.session
    assert session is not None, "reply stage runs after the session stage"
    outbox: tuple[OutboxItem, ...] = ()
    if turn.claim is not None:  # a turn of the message path commits its replies with it
        outbox = tuple(_reply_item(turn, reply, session.id) for reply in turn.outbound) + tuple(
            OutboxItem(
                channel=message.channel,
                conversation=message.conversation,
                message=outbound_to_json(message) | {"origin": "talk-to"},
            )
            for message in turn.talk_to
        )
    desk = turn.services.handoffs
    transfer = turn.transfer
    if transfer is not None and desk is not None:
        event = desk.transfer_event(
            turn.bot.name, session.channel, session.user_id, session.id, transfer
        )
        if event is not None:
            outbox = (*outbox, event)
    await turn.services.conversations.save(
        session, append=turn.history, claim=turn.claim, outbox=outbox, handoff=transfer
    )
    if transfer is not None and desk is not None:
        bot, session_id = turn.bot.name, session.id

        async def announce() -> None:
            await desk.transferred(bot, session_id)

        turn.after_commit.append(announce)
    for hook in turn.after_commit:
        try:
            await hook()
        except Exception:  # committed: a failed announcement must not run the turn again
            log.exception(
                "after the commit of message %s of bot %s", turn.message.external_id, turn.bot.name
            )


def _reply_item(turn: Turn, reply: OutboundMessage, session_id: str) -> OutboxItem:
    """The outbox row of one reply; one streamed live carries what was sent already, so
    that the delivery worker finishes it (the final edit, the paragraphs left) rather
    than sending it again."""
    message = outbound_to_json(reply, session_id=session_id)
    live = turn.live(reply) if turn.deliver_later else None
    if live is None:
        return OutboxItem(
            channel=reply.channel,
            conversation=reply.conversation,
            message=message,
            delivered=not turn.deliver_later,
        )
    message["live"] = live.to_json()
    return OutboxItem(
        channel=reply.channel,
        conversation=reply.conversation,
        message=message,
        parts_sent=live.parts_sent,
        provider_ids=live.provider_ids[: live.parts_sent],
    )
