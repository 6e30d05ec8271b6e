"""The reply stage: finish the turn's output and persist the session with its history."""

from __future__ import annotations

from pipeline.message_codec import outbound_to_json
from pipeline.session_state import read_state
from pipeline.turn import Next, Turn
from storage.base import OutboxItem

DEFAULT_FALLBACK = "Sorry, I have no answer for that."


async def reply_stage(turn: Turn, next_: Next) -> None:
    """Runs the rest of the chain, then delivers the last message and saves the turn.

    Listed first among the stages after the session so that whatever the later
    stages produced is flushed and saved in one place. When nothing answered,
    the bot's ``Not Understood Message`` (config.csv) is sent so the user is
    never left without a reply — unless a dialog (or a tool the model called) now waits for
    the user's answer (it took the message and chose to say nothing).
    """
    await next_(turn)
    state = read_state(turn.session) if turn.session is not None else None
    waiting = state is not None and (state.dialog is not None or state.pending_tool is not None)
    if not turn.answered and not waiting:
        fallback = turn.bot.package.config.get("not-understood-message") or DEFAULT_FALLBACK
        await turn.say(fallback)
    await turn.flush()
    turn.record_leftover_tokens()
    session = turn.session
    assert session is not None, "reply stage runs after the session stage"
    outbox: tuple[OutboxItem, ...] = ()
    if turn.claim is not None:  # a turn of the message path commits its replies with it
        outbox = tuple(
            OutboxItem(
                channel=reply.channel,
                conversation=reply.conversation,
                message=outbound_to_json(reply, session_id=session.id),
                delivered=not turn.deliver_later,
            )
            for reply in turn.outbound
        ) + tuple(
            OutboxItem(
                channel=message.channel,
                conversation=message.conversation,
                message=outbound_to_json(message) | {"origin": "talk-to"},
            )
            for message in turn.talk_to
        )
    await turn.services.conversations.save(
        session, append=turn.history, claim=turn.claim, outbox=outbox
    )
