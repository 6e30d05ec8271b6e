"""The dialog stage: BASIC dialogs take the message before any other stage.

A message goes to the dialog waiting on HEAR; on a session's first message
the bot's start dialog runs. Only when no dialog consumed the message does
the turn go on to the knowledge and LLM stages.

A dialog that fails (a runtime error, a limit, or a keyword whose capability this gateway does
not offer yet: ``MissingCapability`` is a ``BasicRuntimeError``) ends; the error is logged with
its ``file:line`` and the user gets a polite reply.
"""

from __future__ import annotations

import logging
from typing import Any

from basic import BasicRuntimeError, Interpreter, MissingCapability
from pipeline.dialog_host import DialogHost
from pipeline.turn import Next, Turn

log = logging.getLogger(__name__)

DIALOG_ERROR_REPLY = "Sorry, something went wrong in this conversation. Please start again."


def _input_for_hear(turn: Turn) -> str:
    """A tapped suggestion arrives as its label on most channels; the dialog sees its key."""
    text = turn.text
    folded = text.strip().casefold()
    for key, label in turn.session.state.get("suggestions", []) if turn.session else []:
        if label.casefold() == folded:
            return str(key)
    return text


async def dialog_stage(turn: Turn, next_: Next) -> None:
    session = turn.session
    assert session is not None, "dialog stage runs after the session stage"
    state = session.state
    waiting: dict[str, Any] | None = state.get("dialog")
    bot = turn.bot
    if waiting is None and state.get("started"):
        await next_(turn)
        return
    interpreter = Interpreter(
        bot.programs, DialogHost(turn), limits=bot.limits, globals=bot.globals
    )
    try:
        if waiting is not None:
            outcome = await interpreter.resume(waiting, _input_for_hear(turn))
        else:
            state["started"] = True
            start = bot.start_program
            if start is None:
                await next_(turn)
                return
            outcome = await interpreter.start(start)
    except BasicRuntimeError as e:
        log.error(
            "dialog %s bot=%s session=%s message=%s: %s",
            "needs a missing capability" if isinstance(e, MissingCapability) else "error",
            bot.name,
            session.id,
            turn.message.external_id,
            e,
        )
        state.pop("dialog", None)
        state["suggestions"] = []
        await turn.say(DIALOG_ERROR_REPLY)
        return
    if outcome.state is None:
        state.pop("dialog", None)
    else:
        state["dialog"] = outcome.state
