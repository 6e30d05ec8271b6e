"""The handoff stage: while a person has the conversation, the bot says nothing.

A conversation a dialog transferred (``TRANSFER TO HUMAN``) carries ``needs_human`` in its
session state, written with the turn that transferred it. For such a conversation only, the
stage reads its handoff (one query; other conversations cost nothing):

- still open (waiting for an agent, or held by one): the user's message is kept in the
  history by the reply stage, shown to the agents once committed, and no later stage runs:
  no dialog, no model, no fallback reply. The session's state is left as it was, so the
  dialog can go on from there;
- released (or returned by the queue timeout): the flag is cleared and the message goes on
  to the bot, to the dialog where it waited (``continue``) or, for a handoff released with
  ``restart``, to a conversation started over.

A failure to read the handoff fails the turn (retried): a message is never answered by the
bot while a person may hold its conversation.
"""

from __future__ import annotations

import logging

from pipeline.session_state import SessionState, SessionStateError, read_state, write_state
from pipeline.turn import Next, Turn

log = logging.getLogger(__name__)


async def handoff_stage(turn: Turn, next_: Next) -> None:
    session = turn.session
    assert session is not None, "handoff stage runs after the session stage"
    try:
        state = read_state(session)
    except SessionStateError:  # the dialog stage reports it and starts over
        await next_(turn)
        return
    if not state.needs_human:
        await next_(turn)
        return
    desk = turn.services.handoffs
    handoff = await desk.store.latest(session.id) if desk is not None else None
    if desk is not None and handoff is not None and handoff.open:
        turn.held = True
        text = turn.text

        async def show_the_agents() -> None:
            await desk.user_said(handoff, text)

        turn.after_commit.append(show_the_agents)
        return
    state.needs_human = False
    if handoff is not None and handoff.release_mode == "restart":
        log.info(
            "conversation restarted after its handoff bot=%s session=%s", turn.bot.name, session.id
        )
        state = SessionState()
    write_state(session, state)
    await next_(turn)
