"""The dialog stage: BASIC dialogs take the message before any other stage.

A message goes to the dialog waiting on HEAR; on a session's first message
the bot's start dialog runs. The turn goes on to the knowledge and LLM stages when no dialog
waits, and also after the start dialog ran to its end: as in General Bots, the first message
is then answered by the model too, with the tools, system prompt and context the start
dialog set up.  A dialog resumed by the message (or a start dialog that now waits on HEAR)
owns it: the turn ends there.  So does a tool the model called that waits on HEAR: the
message goes on to the LLM stage, which resumes it.

A dialog that fails (a runtime error, a limit, or a keyword whose capability this gateway does
not offer yet: ``MissingCapability`` is a ``BasicRuntimeError``) ends; the error is logged with
its ``file:line``, the user gets a polite reply, and the next message starts the start dialog
again rather than leaving the user at a dead end.  A waiting dialog whose program changed since
it waited (an edited file, an upgraded interpreter) starts again from the top, with a log line.

An infrastructure failure inside a keyword (``HostUnavailable``) is not the dialog's: it is not
caught here, so the turn fails, the session is not saved, and the retried message finds the
dialog waiting where it was.
"""

from __future__ import annotations

import logging

from basic import BasicRuntimeError, Interpreter, MissingCapability
from pipeline.dialog_host import DialogHost
from pipeline.session_state import SessionState, SessionStateError, read_state, write_state
from pipeline.turn import Next, Turn

log = logging.getLogger(__name__)

DIALOG_ERROR_REPLY = "Sorry, something went wrong in this conversation. Please start again."


def input_for_hear(state: SessionState, text: str) -> str:
    """A tapped suggestion arrives as its label on most channels; the dialog sees its key."""
    folded = text.strip().casefold()
    for key, label in state.suggestions:
        if label.casefold() == folded:
            return key
    return text


def _session_state(turn: Turn) -> SessionState:
    assert turn.session is not None, "dialog stage runs after the session stage"
    try:
        return read_state(turn.session)
    except SessionStateError as e:
        log.error("session %s: %s; starting the conversation again", turn.session.id, e)
        return SessionState()


async def dialog_stage(turn: Turn, next_: Next) -> None:
    session = turn.session
    assert session is not None, "dialog stage runs after the session stage"
    state = _session_state(turn)
    bot = turn.bot
    if state.dialog is None and (state.started or state.pending_tool is not None):
        await next_(turn)
        return
    host = DialogHost(turn, state=state)
    interpreter = Interpreter(
        bot.programs, host, limits=bot.limits, globals=bot.globals, broken=bot.broken
    )
    waiting = state.dialog
    if waiting is not None:
        reason = interpreter.cannot_resume(waiting)
        if reason is not None:
            log.warning("dialog restarted bot=%s session=%s: %s", bot.name, session.id, reason)
            waiting = state.dialog = None
    try:
        if waiting is not None:
            outcome = await interpreter.resume(waiting, input_for_hear(state, turn.text))
        else:
            start = bot.start_program
            if start is None and bot.start_broken:
                # logged at load; the user still deserves an answer, at every message
                log.error("bot %s: start dialog has errors, session=%s", bot.name, session.id)
                await turn.say(DIALOG_ERROR_REPLY)
                return
            state.started = True
            if start is None:
                write_state(session, state)
                await next_(turn)
                return
            outcome = await interpreter.start(start)
    except BasicRuntimeError as e:
        why = ""
        if isinstance(e, MissingCapability) and e.capability == "llm" and bot.model_problem:
            why = f" ({bot.model_problem})"
        log.error(
            "dialog %s bot=%s session=%s message=%s: %s%s",
            "needs a missing capability" if isinstance(e, MissingCapability) else "error",
            bot.name,
            session.id,
            turn.message.external_id,
            e,
            why,
        )
        state.dialog = None
        state.suggestions = []
        state.started = False  # the next message starts the start dialog again
        write_state(session, state)
        await turn.say(DIALOG_ERROR_REPLY)
        return
    state.dialog = outcome.state
    write_state(session, state)
    if waiting is None and outcome.state is None and turn.transfer is None:
        await next_(turn)  # the start dialog ended: the model answers the message too
