"""The reply stage: finish the turn's output and persist the session with its history."""

from __future__ import annotations

from pipeline.turn import Next, Turn

DEFAULT_FALLBACK = "Sorry, I have no answer for that."


async def reply_stage(turn: Turn, next_: Next) -> None:
    """Runs the rest of the chain, then delivers the last message and saves the turn.

    Listed first among the stages after the session so that whatever the later
    stages produced is flushed and saved in one place. When nothing answered,
    the bot's ``Not Understood Message`` (config.csv) is sent so the user is
    never left without a reply.
    """
    await next_(turn)
    if not turn.answered:
        fallback = turn.bot.package.config.get("not-understood-message") or DEFAULT_FALLBACK
        await turn.say(fallback)
    await turn.flush()
    assert turn.session is not None, "reply stage runs after the session stage"
    await turn.services.conversations.save(turn.session, append=turn.history)
