"""The session stage: find or start the conversation's session."""

from __future__ import annotations

from pipeline.errors import UnknownSession
from pipeline.turn import Next, Turn
from storage.base import HistoryEntry


async def session_stage(turn: Turn, next_: Next) -> None:
    """Load the session named by the message, else the user's active one, else a new one.

    A session id that does not exist, or belongs to another user, bot or
    channel, is refused: a client must never reach someone else's conversation.
    """
    msg = turn.message
    store = turn.services.conversations
    if msg.session_id is not None:
        session = await store.get(msg.session_id)
        if session is None or (session.bot_id, session.channel, session.user_id) != (
            msg.bot,
            msg.channel,
            msg.conversation,
        ):
            raise UnknownSession(msg.session_id)
    else:
        session = await store.find_active(
            bot_id=msg.bot, channel=msg.channel, user_id=msg.conversation
        )
        if session is None:  # written with the turn's first save
            session = store.new(bot_id=msg.bot, channel=msg.channel, user_id=msg.conversation)
    turn.session = session
    turn.history.append(HistoryEntry(role="user", content=msg.text))
    await next_(turn)
