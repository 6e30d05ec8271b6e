"""The dispatcher: runs turns in order per conversation, concurrently across them."""

from __future__ import annotations

import asyncio
import logging
import time

from channels.base import InboundMessage
from pipeline.bots import BotRegistry
from pipeline.conversation import Knowledge
from pipeline.dialog import dialog_stage
from pipeline.errors import TurnFailed, TurnRejected, UnknownBot
from pipeline.handoff_stage import handoff_stage
from pipeline.llm_stage import llm_stage
from pipeline.media import media_stage
from pipeline.reply import reply_stage
from pipeline.services import Services
from pipeline.sessions import session_stage
from pipeline.turn import ReplySink, Stage, Turn, build_chain
from pipeline.voice import voice_stage
from pipeline.voice_replies import voice_reply_stage
from storage.base import Claim, ConversationChanged

log = logging.getLogger(__name__)


def default_stages(*, knowledge: Knowledge | None = None) -> list[Stage]:
    """The chat flow, outermost first.

    Order matters: the session must exist before anything reads it; reply wraps
    everything after it, so it runs last on the way out, flushing and saving
    what the inner stages produced (the media stage's notes on the user's row
    and its replies included); the voice-reply stage right inside it, so that it
    speaks what every stage after it said before reply delivers and saves it (its
    voice note one more reply); media comes next, so that the message's files are
    stored (the provider's links expire) for whoever answers it, and voice right after
    it, so that a voice note is the user's text for everything after (a person who has
    the conversation reads the transcript too); then the handoff
    stage, because while a person has the conversation none of the bot's stages may
    run (reply still saves the user's message, and sends no fallback); dialog
    precedes the LLM because a dialog
    waiting on HEAR owns the next message (the start dialog also sets up the
    tools, prompt and context the model then gets). The LLM stage searches
    ``knowledge`` (None: no knowledge base) for its context, or answers from it
    when the bot has no model.
    """
    return [
        session_stage,
        reply_stage,
        voice_reply_stage,
        media_stage,
        voice_stage,
        handoff_stage,
        dialog_stage,
        llm_stage(knowledge=knowledge),
    ]


class Dispatcher:
    """Entry point of the pipeline for every channel.

    One conversation's messages run one at a time, in arrival order (a lock
    per conversation, shared across instances when the lock store is Redis);
    different conversations run concurrently, at most ``max_concurrent_turns``
    at once in this process. ``knowledge`` is the knowledge base the default
    stages search (see :data:`pipeline.conversation.Knowledge`).
    """

    def __init__(
        self,
        bots: BotRegistry,
        services: Services,
        *,
        stages: list[Stage] | None = None,
        knowledge: Knowledge | None = None,
        max_concurrent_turns: int = 256,
        turn_lock_ttl: float = 120.0,
        turn_lock_timeout: float = 60.0,
    ) -> None:
        self._bots = bots
        self._services = services
        self._chain = build_chain(default_stages(knowledge=knowledge) if stages is None else stages)
        self._slots = asyncio.Semaphore(max_concurrent_turns)
        self._lock_ttl = turn_lock_ttl
        self._lock_timeout = turn_lock_timeout

    async def handle(
        self,
        message: InboundMessage,
        sink: ReplySink,
        *,
        claim: Claim | None = None,
        deliver_later: bool = False,
    ) -> Turn:
        """Run one turn; replies go to ``sink`` as they are produced.

        With an inbox ``claim`` the turn commits with it (its replies to the
        outbox, for the delivery worker when ``deliver_later``), and the claim
        already orders the conversation: no lock is taken. Without one, a lock
        per conversation orders the turns (the terminal chat, tests).

        Raises :class:`TurnRejected` for input the client must change and
        :class:`TurnFailed` (with the cause chained) for failures on our side.
        """
        bot = self._bots.get(message.bot)
        if bot is None:
            raise UnknownBot(message.bot)
        turn = Turn(
            message=message,
            bot=bot,
            services=self._services,
            sink=sink,
            claim=claim,
            deliver_later=deliver_later,
        )
        try:
            if claim is not None:
                async with self._slots:
                    turn.started = time.perf_counter()
                    await self._chain(turn)
            else:
                async with self._services.locks.lock(
                    f"turn:{message.conversation_key}",
                    ttl=self._lock_ttl,
                    timeout=self._lock_timeout,
                ):
                    async with self._slots:
                        turn.started = time.perf_counter()
                        await self._chain(turn)
        except TurnRejected:
            raise  # the caller answers the client and logs it
        except ConversationChanged as e:
            raise TurnFailed("turn not written: its conversation changed") from e  # (no fault)
        except Exception as e:
            log.exception(
                "turn failed channel=%s bot=%s message=%s after %.1f ms",
                message.channel,
                message.bot,
                message.external_id,
                (time.perf_counter() - turn.started) * 1000,
            )
            raise TurnFailed(f"turn failed: {type(e).__name__}") from e
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "turn done channel=%s bot=%s message=%s replies=%d in %.2f ms",
                message.channel,
                message.bot,
                message.external_id,
                turn.replies,
                (time.perf_counter() - turn.started) * 1000,
            )
        return turn
