"""Model answers streamed live to Telegram, WhatsApp and SMS while their turn runs.

A worker turn commits its replies as outbox rows, sent once the turn committed (the
transactional outbox: a reply exists iff its turn committed). A streamed answer cannot
wait for that: Telegram shows it growing in one message, WhatsApp and SMS get its
paragraphs as they complete. So the turn's sink (:class:`LiveReplySink`) sends the
deltas on through :class:`channels.streaming.LiveStream` as they arrive, and the reply's
outbox row, committed with the turn, says what went out, for the delivery worker to
finish it: the final edit (formatted, with the buttons, new messages past 4096) on
Telegram, the paragraphs not yet sent on WhatsApp and SMS.

What holds whatever is killed when:

- **The last step waits for the commit.** A live stream never sends a complete reply:
  Telegram's message is plain until the delivery worker's final edit, and the last
  paragraph of a WhatsApp or SMS reply is only ever sent from the outbox. A turn that
  dies mid-stream has shown at most a partial answer.
- **A retried turn does not send its answer twice.** Each message a live stream sends
  is recorded on the turn's inbox row (:meth:`storage.base.Inbox.record_live`, by the
  lease's holder only) before the stream goes on. The retry (after a crash, a store
  outage, a lost lease) gets the record with its claim: on Telegram it edits those
  messages instead of sending new ones, so the user sees the partial message rewritten
  by the new answer; on WhatsApp and SMS a paragraph whose text (and everything before
  it) is the same as before is counted as sent, not sent again. What a retry cannot
  take back: paragraphs of a different answer stay (a partial answer, then the retry's
  whole one), and a message whose send was on its way when the process died, unrecorded
  (at most the first words of the answer, or of a message past the limit).
- **The commit says what was sent.** The outbox row of a live reply starts with the
  parts already sent (``parts_sent``, their provider ids) and its message's ``live``
  record (the message being edited, what is finished, the characters sent), so the
  delivery worker goes on from there with its pacing, retries and parking, and a
  restart of the delivery worker never sends a part twice either. The final edit is
  safe to repeat, so a crash while it is on its way sends it again rather than parking
  the reply as unknown.
- **A failed live send falls back to the normal delivery.** Any error stops the live
  stream (a 429 on an interim edit only skips it); whatever it did not send goes out
  from the outbox at commit, paced and retried as every reply.

The order of messages in the chat stays the order of the turns: a reply streams live
only when nothing of the conversation waits in the outbox (an earlier turn's reply still
being sent, a proactive message) and nothing of its own turn waits for the commit before
it (a dialog's ``TALK`` before the model answers); otherwise it goes whole, from the
outbox, after them. Live sends share the delivery worker's pacer, so the provider's
per-chat and global rates hold across both, and the final edit keeps the edit interval
after the last live one, also from another instance (the record carries its time).

Which bots stream: config.csv's ``stream-replies`` (``true`` by default, ``false``, or
the channels that stream, e.g. ``telegram``); General Bots has no key of its own for it.
The web channel always streams its deltas on the request (SSE, WebSocket).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta

from channels.base import Channel, InboundMessage, OutboundMessage, StreamMode
from channels.pacing import Pacer
from channels.streaming import LiveEntry, LiveResult, LiveStream
from storage.base import Claim, Inbox, Outbox, StorageError

log = logging.getLogger(__name__)

# A reply is not streamed when the user's message is about to leave WhatsApp's 24-hour
# window: the delivery worker decides between the reply and the template then.
WINDOW_MARGIN = timedelta(hours=23)

AdapterLookup = Callable[[str, str], Channel | None]
# (bot, channel, adapter) -> the pacer the delivery worker paces that sender with.
PacerLookup = Callable[[str, str, Channel], Pacer]
# (bot, channel) -> whether the bot streams replies on that channel.
StreamsOn = Callable[[str, str], bool]


class LiveReplies:
    """Makes the live sink of each worker turn whose bot streams on its channel."""

    def __init__(
        self,
        adapters: AdapterLookup,
        pacers: PacerLookup,
        inbox: Inbox,
        outbox: Outbox,
        *,
        streams: StreamsOn,
        window_channels: Collection[str] = (),
        interactive_text_limits: dict[str, int] | None = None,
    ) -> None:
        self._adapters = adapters
        self._pacers = pacers
        self._inbox = inbox
        self._outbox = outbox
        self._streams = streams
        self._windows = frozenset(window_channels)
        self._interactive = interactive_text_limits or {}

    def sink(self, claim: Claim, message: InboundMessage) -> LiveReplySink | None:
        """The live sink of ``message``'s turn, or ``None`` when it does not stream."""
        if not self._streams(message.bot, message.channel):
            return None
        adapter = self._adapters(message.bot, message.channel)
        if adapter is None or adapter.capabilities.stream_mode is StreamMode.DELTAS:
            return None
        if message.channel in self._windows and (
            datetime.now(UTC) - message.received_at > WINDOW_MARGIN
        ):
            return None
        return LiveReplySink(
            adapter,
            message.conversation,
            claim=claim,
            pacer=self._pacers(message.bot, message.channel, adapter),
            inbox=self._inbox,
            outbox=self._outbox,
            interactive_text_limit=self._interactive.get(message.channel),
        )


class LiveReplySink:
    """A worker turn's :class:`~pipeline.turn.LiveSink` on one provider conversation."""

    def __init__(
        self,
        adapter: Channel,
        conversation: str,
        *,
        claim: Claim,
        pacer: Pacer,
        inbox: Inbox,
        outbox: Outbox,
        interactive_text_limit: int | None = None,
    ) -> None:
        self._adapter = adapter
        self._conversation = conversation
        self._claim = claim
        self._pacer = pacer
        self._inbox = inbox
        self._outbox = outbox
        self._interactive = interactive_text_limit
        self._reuse = _entries(claim)
        self._stream: LiveStream | None = None
        self._ended: list[LiveResult] = []  # streams that sent something, awaiting their reply
        self._results: list[tuple[OutboundMessage, LiveResult]] = []
        self._waiting = False  # a reply of this turn waits for the commit: none may overtake it
        self._idle: asyncio.Task[bool] | None = None
        self._declined = False  # this round goes whole, from the outbox

    # -- ReplySink ---------------------------------------------------------------------------

    async def begin(self) -> None:
        self._declined = False
        if self._idle is not None:
            _drop(self._idle)  # an earlier round's, unused: look again
            self._idle = None
        if not self._waiting:
            self._idle = asyncio.get_running_loop().create_task(self._outbox_idle())

    async def delta(self, text: str) -> None:
        stream = self._stream
        if stream is None:
            if self._declined:
                return
            if not await self._may_stream():
                self._declined = True
                return
            stream = self._stream = LiveStream(
                self._adapter,
                self._conversation,
                pacer=self._pacer,
                reuse=self._reuse,
                on_sent=self._record,
                interactive_text_limit=self._interactive,
            )
        stream.feed(text)

    async def end(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        result = await stream.close()
        self._reuse = self._reuse[stream.reused :]
        if result.provider_ids:
            self._ended.append(result)

    async def message(self, message: OutboundMessage) -> None:
        if self._ended:
            result = self._ended.pop(0).for_text(message.text)
            if result is not None:
                self._results.append((message, result))
                return
        self._waiting = True

    def live(self, message: OutboundMessage) -> LiveResult | None:
        for sent, result in self._results:
            if sent is message:
                return result
        return None

    async def close(self) -> None:
        await self.end()
        idle, self._idle = self._idle, None
        if idle is not None:
            _drop(idle)
            await asyncio.gather(idle, return_exceptions=True)

    # -- deciding and recording --------------------------------------------------------------

    async def _outbox_idle(self) -> bool:
        claim = self._claim
        return not await self._outbox.busy(claim.bot_id, claim.channel, claim.conversation)

    async def _may_stream(self) -> bool:
        """Whether this round may go live: nothing waits before it, here or in the outbox."""
        if self._waiting:
            return False
        idle_check = self._idle
        self._idle = None
        try:
            if idle_check is None or not await idle_check:
                # Looked up as the model was asked; an earlier reply may have gone since.
                if not await self._outbox_idle():
                    log.info(
                        "reply to %s %s not streamed: earlier replies wait in the outbox",
                        self._adapter.name,
                        self._conversation,
                    )
                    return False
        except StorageError as e:
            log.warning("reply not streamed: the outbox could not be read: %s", e)
            return False
        return True

    async def _record(self, entry: LiveEntry) -> bool:
        return await self._inbox.record_live(self._claim, entry.to_json())


def _drop(task: asyncio.Task[bool]) -> None:
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()  # retrieved: a failed look-up that was not needed is no error


def _entries(claim: Claim) -> Sequence[LiveEntry]:
    entries: list[LiveEntry] = []
    for data in claim.live:
        try:
            entries.append(LiveEntry.from_json(data))
        except (KeyError, TypeError, ValueError) as e:
            log.warning("inbox row %d: a live record is unreadable (%s): ignored", claim.seq, e)
            return entries
    return entries
