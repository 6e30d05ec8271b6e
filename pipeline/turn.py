"""The turn: one inbound message travelling through the pipeline stages."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from channels.base import Attachment, InboundMessage, OutboundMessage, Player, Suggestion
from channels.streaming import LiveResult
from pipeline.protocol_checks import implements
from pipeline.session_state import read_state
from storage.base import Claim, HistoryAttachment, HistoryEntry, Session, TransferItem

if TYPE_CHECKING:
    from pipeline.bots import Bot
    from pipeline.handoff import TransferResult
    from pipeline.media import StoredMedia
    from pipeline.media_content import MediaReading
    from pipeline.services import Services


class ReplySink(Protocol):
    """Where a turn's replies go as they are produced (HTTP response, WebSocket, channel)."""

    async def delta(self, text: str) -> None:
        """A partial piece of the reply being produced (streamed LLM output)."""

    async def message(self, message: OutboundMessage) -> None:
        """One complete bot message."""


@runtime_checkable
class StreamingSink(ReplySink, Protocol):
    """A sink told when a model stream starts and ends (its deltas come in between)."""

    async def begin(self) -> None:
        """A model stream is about to start (an event stream sends its head now; a live
        sink looks up, meanwhile, whether the stream may go to the provider live)."""

    async def end(self) -> None:
        """The model stream ended, or was cut short."""


@runtime_checkable
class LiveSink(StreamingSink, Protocol):
    """A sink that sends streamed model output to a provider while the turn runs (a
    worker turn on Telegram, WhatsApp, SMS), before the turn commits.

    The model's text of one round arrives as deltas between :meth:`begin` and
    :meth:`end` (which stops sending live); the next :meth:`message` is that text
    whole (or the reply that replaces it, after a stream cut short), and :meth:`live`
    then says what of it was already sent, for its outbox row to go on from there.
    """

    def live(self, message: OutboundMessage) -> LiveResult | None:
        """What was sent live of ``message`` (one that went to :meth:`message`)."""

    async def close(self) -> None:
        """The turn is over: stop whatever still sends."""


@dataclass(slots=True)
class Turn:
    """The context of one turn: the message, its bot and session, and where replies go.

    Bot messages are held back by one: a message is delivered when the next one
    is produced or when the turn ends, so that the suggestions valid at the end
    of the turn ride on its last message only.
    """

    message: InboundMessage
    bot: Bot
    services: Services
    sink: ReplySink
    session: Session | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    # The inbox claim the turn commits with, and the replies it commits to the outbox:
    # to be sent by the delivery worker (``deliver_later``), or kept as a record of what
    # the sink already delivered (a web reply written on its request).
    claim: Claim | None = None
    deliver_later: bool = False
    outbound: list[OutboundMessage] = field(default_factory=list)
    # TALK TO messages (to anyone, on any channel): outbox rows for the delivery worker,
    # committed with the turn like its replies.
    talk_to: list[OutboundMessage] = field(default_factory=list)
    # TRANSFER TO HUMAN in this turn: the transfer its commit puts in the bot's queue, and
    # what the user is told when the turn says nothing else.
    transfer: TransferItem | None = None
    transfer_result: TransferResult | None = None
    # A person has the conversation (its handoff is open): the bot's stages did not run.
    held: bool = False
    # Run once the turn committed (news for the agents' consoles); failures are only logged.
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The message's attachments in the blob store, once the media stage took them.
    media: list[StoredMedia] = field(default_factory=list)
    # What the message's audio files said, by position, once the voice stage heard them.
    transcripts: dict[int, str] = field(default_factory=dict)
    # What was read of them, by position, once something asked (pipeline.media_content).
    readings: dict[int, MediaReading] = field(default_factory=dict)
    replies: int = 0
    started: float = field(default_factory=time.perf_counter)
    # Model tokens this turn spent that no history row carries yet: the model's answer
    # takes them (``say(…, tokens_used=turn.take_tokens())``), else the user's row.
    unrecorded_tokens: int = 0
    # The bot message held back (its text, its tokens, the file it carries and the player
    # that shows it, if any).
    _pending: tuple[str, int, Attachment | None, Player | None] | None = None

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def history_size(self) -> int:
        """The history rows this turn will append, the held-back message included."""
        return len(self.history) + (self._pending is not None and _kept(*self._pending))

    def add_tokens(self, tokens: int) -> None:
        """Count model tokens spent for this turn, until a message records them."""
        self.unrecorded_tokens += max(tokens, 0)

    def take_tokens(self) -> int:
        """The tokens counted so far, for the message about to be said."""
        tokens, self.unrecorded_tokens = self.unrecorded_tokens, 0
        return tokens

    def record_leftover_tokens(self) -> None:
        """Put tokens no bot message took on the user's row (a turn that said nothing)."""
        if not self.unrecorded_tokens:
            return
        for i, entry in enumerate(self.history):
            if entry.role == "user":
                self.history[i] = replace(
                    entry, tokens_used=entry.tokens_used + self.unrecorded_tokens
                )
                self.unrecorded_tokens = 0
                return

    @property
    def answered(self) -> bool:
        """Whether the turn produced any bot message yet."""
        return self.replies > 0 or self._pending is not None

    async def say(self, text: str, *, tokens_used: int = 0) -> None:
        """Send one bot message (delivered when the next one comes or the turn ends);
        ``tokens_used`` is what the model spent on it, kept on its history row."""
        if self._pending is not None:
            await self._deliver(*self._pending, ())
        self._pending = (text, tokens_used, None, None)

    async def release(self) -> None:
        """Deliver the held-back message now, without suggestions, because more follows
        (streamed deltas must not arrive before a message said earlier)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await self._deliver(*pending, ())

    async def flush(self) -> None:
        """Deliver the held-back message with the session's current suggestions."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        await self._deliver(*pending, self.suggestions())

    async def say_file(
        self, text: str, attachment: Attachment, *, player: Player | None = None
    ) -> None:
        """Send a bot message carrying a file (``text`` its caption), held back like any
        other so that the suggestions valid at the end of the turn may ride on it; its
        history row keeps the file's key. ``player`` shows it (PLAY, on the web)."""
        if self._pending is not None:
            await self._deliver(*self._pending, ())
        self._pending = (text, 0, attachment, player)

    async def say_player(self, text: str, player: Player) -> None:
        """Open a player with no file of ours (a page it links to: ``text``), or close it
        (``STOP``, no text, which the history does not keep), held back like any other."""
        if self._pending is not None:
            await self._deliver(*self._pending, ())
        self._pending = (text, 0, None, player)

    async def say_file_last(self, attachment: Attachment) -> None:
        """Deliver the held-back message with the session's suggestions, then a file with
        none and no caption (the turn's replies spoken: their buttons stay on their text,
        rather than on a text naming the file)."""
        await self.flush()
        await self._deliver("", 0, attachment, None, ())

    def reply_texts(self) -> list[str]:
        """The text of the bot messages this turn produced so far, the held-back one
        included (files' captions left out)."""
        texts = [
            reply.text for reply in self.outbound if not reply.attachments and not reply.player
        ]
        if self._pending is not None and self._pending[2] is None and self._pending[3] is None:
            texts.append(self._pending[0])
        return texts

    @contextlib.asynccontextmanager
    async def streaming(self) -> AsyncIterator[None]:
        """Around one model stream, whose deltas go to the sink: a live sink sends them to
        the provider as they come, and stops at the end (or when the stream fails)."""
        sink = self.sink
        if not implements(sink, StreamingSink):
            yield
            return
        await sink.begin()
        try:
            yield
        finally:
            await sink.end()

    def live(self, reply: OutboundMessage) -> LiveResult | None:
        """What of ``reply`` (one of :attr:`outbound`) was already sent live."""
        sink = self.sink
        return sink.live(reply) if implements(sink, LiveSink) else None

    def suggestions(self) -> tuple[Suggestion, ...]:
        if self.session is None:
            return ()
        return tuple(Suggestion(key, label) for key, label in read_state(self.session).suggestions)

    async def _deliver(
        self,
        text: str,
        tokens_used: int,
        attachment: Attachment | None,
        player: Player | None,
        suggestions: tuple[Suggestion, ...],
    ) -> None:
        msg = self.message
        self.replies += 1
        notes = () if attachment is None else (_history_note(attachment),)
        if _kept(text, tokens_used, attachment, player):
            self.history.append(
                HistoryEntry(
                    role="assistant", content=text, tokens_used=tokens_used, attachments=notes
                )
            )
        reply = OutboundMessage(
            channel=msg.channel,
            bot=msg.bot,
            conversation=msg.conversation,
            text=text,
            attachments=() if attachment is None else (attachment,),
            suggestions=suggestions,
            reply_to=msg.external_id,
            player=player,
        )
        self.outbound.append(reply)
        await self.sink.message(reply)


def _kept(text: str, tokens: int, attachment: Attachment | None, player: Player | None) -> bool:
    """Whether a bot message gets a history row: all do but a player's closing alone (STOP),
    which says nothing."""
    return bool(text or tokens or attachment is not None or player is None)


def _history_note(attachment: Attachment) -> HistoryAttachment:
    return HistoryAttachment(
        kind=attachment.kind.value,
        key=attachment.key,
        content_type=attachment.content_type,
        size=attachment.size,
        filename=attachment.filename,
        caption=attachment.caption,
    )


Next = Callable[[Turn], Awaitable[None]]
Stage = Callable[[Turn, Next], Awaitable[None]]


def build_chain(stages: list[Stage]) -> Next:
    """Compose stages into one handler: each stage gets the rest of the chain as ``next``."""

    async def end(turn: Turn) -> None:
        return None

    handler: Next = end
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, next_: Next) -> Next:
    def run(turn: Turn) -> Awaitable[None]:
        return stage(turn, next_)  # the stage's own awaitable: no wrapper coroutine per turn

    return run
