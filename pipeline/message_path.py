"""The message path every channel shares: claim in the inbox, run in order, commit once.

A webhook's messages are :meth:`MessagePath.accept`-ed: written to the inbox
(a redelivery is recognised there and dropped) before the provider gets its
2xx, and leased in the same statement, with the turn's session read, when this
instance's worker has a free slot and the conversation nothing else in flight:
the turn then starts at once, where a worker's lease and the session's read
took two more statements. Otherwise the inbox worker leases them later, the
oldest of each conversation at a time (the end of a turn sends it to look when
a message accepted here waits for that conversation or for a slot), and runs
their turns concurrently across conversations, at most ``workers`` at once.
A turn commits its session, history, outbox rows and
the claim in one statement. A turn that failed on our side (a store outage,
a lost lock, a provider error inside a dialog's call) is given back with
exponential backoff and parked as dead after ``max_attempts``; a message
whose claim a crash left behind is leased again when its lease expires, by
any instance. A message older than ``max_age`` is dropped with a log line.

A worker's turn sends its replies nowhere (they are outbox rows, sent once it
committed), except the model's answers on the channels that stream: its sink
(:mod:`pipeline.live_replies`) sends them to the provider as they are written, records
on the inbox row what it sent, and the reply's outbox row goes on from there.

The synchronous web API rides the same path: :meth:`MessagePath.run_inline`
writes the message, leases it itself (in the same statement, and with the
turn's session read, when no earlier message of the conversation is active)
and runs the turn with the request's sink, so the replies stream on the
request; the message is held back from other workers for ``inline_grace``
seconds meanwhile, after which a worker runs it even if the request was lost.

A request whose message has no id of its own, answered only once its turn is over
(``written_after``), needs none of that: its sender cannot send it again, so there is no
redelivery to recognise, and until the answer nothing was acknowledged. Its turn runs from
a read that writes nothing (:meth:`storage.base.Inbox.reserve`: the session, and whether
the conversation has a message in flight), and its commit writes the message, done, with
the session, history and replies: one commit per turn instead of two. The commit checks
that the conversation did not change since the read (no message of it became active, the
session is the row that was read); when it did, nothing was written or sent, and the
message runs again the usual way, behind whatever came in between. Here, the next message
of such a conversation waits for its turn to end, so that check fails only for messages
that arrive on two instances at once. A failure on our side writes the message for the
workers, as a written one would be given back; a crash in the middle of its turn leaves
nothing behind, and its request fails: the sender was never answered.

Albums and bursts (:mod:`pipeline.gathering`): a message that may be one of several
answered together is held back for its window when accepted; the worker that leases the
first folds the others into it before its turn runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from channels.base import InboundMessage, OutboundMessage
from pipeline.dispatcher import Dispatcher
from pipeline.errors import PipelineError, TurnFailed, TurnRejected
from pipeline.gathering import TAG, GatherPolicy, gather
from pipeline.live_replies import LiveReplies
from pipeline.message_codec import inbound_from_json, inbound_to_json, outbound_from_json
from pipeline.protocol_checks import implements
from pipeline.turn import LiveSink, ReplySink, Turn
from storage.base import (
    Claim,
    ClaimLost,
    ConversationChanged,
    Inbox,
    InboxItem,
    SessionRead,
    StorageError,
    turn_session_read,
)

log = logging.getLogger(__name__)

Conversation = tuple[str, str, str]  # (bot, channel, conversation)


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """How the message path runs turns and treats failures (seconds where a time)."""

    workers: int = 64
    lease: float = 60.0
    max_attempts: int = 5
    max_age: float = 24 * 3600.0
    poll_interval: float = 1.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    inline_grace: float = 30.0
    inline_timeout: float = 30.0

    def backoff(self, attempts: int) -> float:
        """The wait before try ``attempts + 1``: doubling, capped, with jitter so retries of
        many messages after one outage do not all arrive at once."""
        delay: float = min(self.backoff_cap, self.backoff_base * 2.0 ** max(attempts - 1, 0))
        return delay * random.uniform(0.5, 1.0)


class MessageQueued(PipelineError):
    """The message is in the inbox but did not run within the request's time: a worker runs
    it; its replies are recorded (and readable with the history)."""


class MessageFailed(PipelineError):
    """A redelivered message whose first delivery ended without a turn (refused or parked)."""

    def __init__(self, status: str, error: str | None) -> None:
        super().__init__(f"the message was {status}: {error or 'no reason recorded'}")
        self.status = status
        self.error = error


@dataclass(frozen=True, slots=True)
class InlineResult:
    """A message run for a waiting request: its session and the replies of its turn.

    ``recorded``: the turn ran elsewhere (a redelivered message id, or a worker
    that ran it while the request waited), so the replies were not sent to the
    request's sink and come from the outbox record.
    """

    session_id: str | None
    replies: tuple[OutboundMessage, ...]
    recorded: bool = False


class _Discard:
    """Where a worker's turn sends its replies: nowhere, for they are in the outbox."""

    async def delta(self, text: str) -> None:
        return None

    async def message(self, message: OutboundMessage) -> None:
        return None


class _Heartbeat:
    """Keeps a turn's lease: a timer for the first third of the lease, then a task that
    extends it (:meth:`MessagePath._keep_lease`). Nearly every turn ends long before
    the timer fires, and a timer costs far less than a task per turn."""

    __slots__ = ("_claim", "_handle", "_loop", "_path", "_task")

    def __init__(self, path: MessagePath, claim: Claim) -> None:
        self._path = path
        self._claim = claim
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._handle = self._loop.call_later(path.policy.lease / 3, self._start)

    def _start(self) -> None:
        self._task = self._loop.create_task(self._path._keep_lease(self._claim))

    def cancel(self) -> None:
        self._handle.cancel()
        if self._task is not None:
            self._task.cancel()


_DISCARD = _Discard()


@dataclass(slots=True)
class _Counters:
    turns: int = 0
    leased_on_accept: int = 0  # of the turns: leased by the statement that accepted them
    retried: int = 0
    parked: int = 0
    dropped: int = 0
    duplicates: int = 0
    written_after: int = 0  # of the turns: run before their message was written
    run_again: int = 0  # such turns not written, their conversation changed: run again


class MessagePath:
    """Accepts inbound messages into the inbox and runs their turns.

    ``delivered_by_channel`` names the channels whose replies the delivery
    worker sends (their outbox rows are pending); other channels' replies are
    delivered by their own sink (the web request) and only recorded.
    ``on_commit`` is called after each committed turn that left replies to send.
    ``live`` streams the model's answers of those channels while their turns run (see
    :mod:`pipeline.live_replies`); without it their replies go whole, after the commit.
    ``gathering`` gives a bot's album and burst windows (none: every message is a turn).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        inbox: Inbox,
        *,
        policy: PathPolicy | None = None,
        delivered_by_channel: Collection[str] = (),
        window_channels: Collection[str] = (),
        on_commit: Callable[[], None] | None = None,
        live: LiveReplies | None = None,
        gathering: Callable[[str], GatherPolicy | None] | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._gathering = gathering
        self._live = live
        self._inbox = inbox
        self.policy = policy or PathPolicy()
        self._delivered = frozenset(delivered_by_channel)
        self._windows = frozenset(window_channels)
        self._on_commit = on_commit
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._reserved = 0  # slots taken by accepts whose turn is not started yet
        self._here: Counter[Conversation] = Counter()  # conversations with a turn running here
        self._waiting: Counter[Conversation] = Counter()  # see _take_waiting
        self._starved = False  # a message accepted here may wait for a free slot
        # Conversations with a turn running here whose message is not written yet: the next
        # message of one waits for it (see run_inline).
        self._unwritten: dict[Conversation, asyncio.Event] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self.counters = _Counters()

    # -- accepting --------------------------------------------------------------------------

    def _item(
        self, message: InboundMessage, *, delay: float = 0.0, tag: dict[str, Any] | None = None
    ) -> InboxItem:
        data = inbound_to_json(message)
        if tag is not None:
            data[TAG] = tag
        return InboxItem(
            bot_id=message.bot,
            channel=message.channel,
            external_id=message.external_id,
            conversation=message.conversation,
            received_at=message.received_at,
            message=data,
            delay=delay,
            window=message.channel in self._windows,
        )

    def _mark(self, message: InboundMessage) -> tuple[dict[str, Any], float] | None:
        policy = self._gathering(message.bot) if self._gathering is not None else None
        return policy.mark(message) if policy is not None else None

    async def accept(self, message: InboundMessage) -> bool:
        """Claim ``message`` durably for the workers; ``False`` for a redelivery.

        Raises :class:`StorageError` when the inbox cannot be written: the
        provider must then get an error status, so that it delivers again.
        """
        mark = self._mark(message)
        if mark is None and self._slot_free():
            return await self._accept_and_run(message)
        key = (message.bot, message.channel, message.conversation)
        self._waiting[key] += 1  # before the put: a turn that ends meanwhile must look
        if mark is None:
            self._starved = True  # every slot taken
            seq = await self._inbox.put(self._item(message))
        else:
            tag, hold = mark
            seq = await self._inbox.put(self._item(message, delay=hold, tag=tag))
            if seq is not None:  # due then: look for it (other instances find it polling)
                asyncio.get_running_loop().call_later(hold, self._wake.set)
        if seq is None:
            self._take_waiting(key)
            self._duplicate(message)
            return False
        self._wake.set()
        return True

    def _slot_free(self) -> bool:
        """Whether this instance's worker runs and has a slot for one more turn now."""
        running = len(self._running) + self._reserved
        return self._loop_task is not None and running < self.policy.workers

    async def _accept_and_run(self, message: InboundMessage) -> bool:
        """Accept ``message`` leased to this instance when its conversation has nothing
        else in flight, and start its turn: one statement (and one commit, shared with
        concurrent webhooks) writes it, leases it and reads its session, where a put, a
        worker's lease and the session stage's read took three. The lease is this
        instance's like any worker's: after a crash it expires and any instance runs
        the message. Otherwise it waits, pending, for the workers like any accepted one."""
        key = (message.bot, message.channel, message.conversation)
        self._reserved += 1  # held until the turn's task has its slot
        self._waiting[key] += 1  # until leased: a turn of it that ends meanwhile must look
        try:
            put = await self._inbox.put_and_claim(
                self._item(message),
                lease=self.policy.lease,
                read_session=True,
                session_id=message.session_id,
            )
        except BaseException:
            self._take_waiting(key)
            raise
        finally:
            self._reserved -= 1
        if put.seq is None:
            self._take_waiting(key)
            self._duplicate(message)
            return False
        if put.claim is not None:
            self._take_waiting(key)
            self.counters.leased_on_accept += 1
            self._start(put.claim, self._run_leased(put.claim, message, put.session))
        # else an earlier message of the conversation is active: the end of its turn (here,
        # or found polling when elsewhere) lets a worker lease this one
        return True

    async def _run_leased(
        self, claim: Claim, message: InboundMessage, read: SessionRead | None
    ) -> None:
        token = turn_session_read.set(read)
        try:
            await self._run(claim, message, None, raise_errors=False)
        except Exception:  # a bug; the lease expires and the message is tried again
            log.exception("inbox worker failed on seq=%d", claim.seq)
        finally:
            turn_session_read.reset(token)
            if read is not None:
                read.used = True  # (see run_inline)

    def _duplicate(self, message: InboundMessage) -> None:
        self.counters.duplicates += 1
        log.info(
            "duplicate dropped channel=%s bot=%s message=%s",
            message.channel,
            message.bot,
            message.external_id,
        )

    async def run_inline(
        self, message: InboundMessage, sink: ReplySink, *, written_after: bool = False
    ) -> InlineResult:
        """Run ``message`` for a waiting request, replies to ``sink``; see the module doc.

        A message id seen before answers with the first delivery's outcome
        once it is known. Raises :class:`TurnRejected`, :class:`TurnFailed`
        (the message is retried by the workers), :class:`MessageQueued` or
        :class:`MessageFailed`.

        ``written_after``: the sender cannot send this message again (it has no id of its
        own, so there is no redelivery to recognise) and ``sink`` sends nothing before the
        turn is over, so the turn may run before the message is written: its commit writes
        it (see the module doc).
        """
        key = (message.bot, message.channel, message.conversation)
        while (running := self._unwritten.get(key)) is not None:
            await running.wait()  # its commit decides what this message's turn reads
        if written_after:
            result = await self._run_unwritten(key, message, sink)
            if result is not None:
                return result
        policy = self.policy
        # The usual case, a conversation with nothing else in flight: written and leased in
        # one statement (and one commit, shared with concurrent requests).
        # Its session is read in that statement too, for the turn's session stage.
        put = await self._inbox.put_and_claim(
            self._item(message, delay=policy.inline_grace),
            lease=policy.lease,
            read_session=True,
            session_id=message.session_id,
        )
        if put.claim is not None:
            read = turn_session_read.set(put.session)
            try:
                return await self._run_inline(put.claim, message, sink)
            finally:
                turn_session_read.reset(read)
                if put.session is not None:
                    # Tasks the turn started keep a copy of its context: the read, true
                    # only before the turn wrote the session, must not answer them later.
                    put.session.used = True
        seq = put.seq
        deadline = time.monotonic() + policy.inline_timeout
        pause = 0.005
        while True:
            if seq is not None:
                claims = await self._inbox.claim(limit=1, lease=policy.lease, seq=seq)
                if claims:
                    return await self._run_inline(claims[0], message, sink)
            outcome = await self._inbox.outcome(message.bot, message.channel, message.external_id)
            if outcome is not None and outcome.status == "done":
                replies = tuple(outbound_from_json(r) for r in outcome.replies)
                return InlineResult(outcome.session_id, replies, recorded=True)
            if outcome is not None and outcome.status in ("dead", "dropped"):
                raise MessageFailed(outcome.status, outcome.error)
            if time.monotonic() >= deadline:
                raise MessageQueued(f"message {message.external_id!r} is queued")
            # An earlier message of the conversation is running, here or elsewhere.
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def _run_unwritten(
        self, key: Conversation, message: InboundMessage, sink: ReplySink
    ) -> InlineResult | None:
        """The turn of a message written with its outcome; ``None`` when it must run written
        first: its conversation has a message in flight, or changed before the commit
        (nothing of this turn was written then, and its replies were not sent)."""
        done = asyncio.Event()
        self._unwritten[key] = done
        try:
            put = await self._inbox.reserve(self._item(message), session_id=message.session_id)
            if put is None or put.claim is None:
                return None
            read = turn_session_read.set(put.session)
            try:
                result = await self._run_inline(put.claim, message, sink)
            except TurnFailed as e:
                if not isinstance(e.__cause__, ConversationChanged):
                    raise
                self.counters.run_again += 1
                log.info(
                    "conversation changed during the turn channel=%s bot=%s message=%s:"
                    " run again, written first",
                    message.channel,
                    message.bot,
                    message.external_id,
                )
                return None
            finally:
                turn_session_read.reset(read)
                if put.session is not None:
                    put.session.used = True  # (see run_inline)
        finally:
            del self._unwritten[key]
            done.set()
        self.counters.written_after += 1
        return result

    async def _run_inline(
        self, claim: Claim, message: InboundMessage, sink: ReplySink
    ) -> InlineResult:
        turn = await self._run(claim, message, sink, raise_errors=True)
        assert turn is not None and turn.session is not None
        return InlineResult(turn.session.id, tuple(turn.outbound))

    # -- running ----------------------------------------------------------------------------

    async def _run(
        self,
        claim: Claim,
        message: InboundMessage | None,
        sink: ReplySink | None,
        *,
        raise_errors: bool,
    ) -> Turn | None:
        """One claimed message's turn, with the claim's outcome recorded whatever happens."""
        policy = self.policy
        if message is None and TAG in claim.message:
            gathered = await self._gather(claim)
            if gathered is None:
                return None
            claim = gathered
        if message is None:
            try:
                message = inbound_from_json(claim.message)
            except (KeyError, TypeError, ValueError) as e:
                log.error("unreadable inbox row seq=%d: %s", claim.seq, e)
                await self._finish(claim, "dead", f"unreadable message: {e}")
                return None
        age = (datetime.now(UTC) - message.received_at).total_seconds()
        if age > policy.max_age:
            self.counters.dropped += 1
            log.warning(
                "message dropped as too old channel=%s bot=%s message=%s age=%.0f s",
                message.channel,
                message.bot,
                message.external_id,
                age,
            )
            await self._finish(claim, "dropped", f"older than {policy.max_age:.0f} s")
            return None
        if sink is None:
            sink = self._sink(claim, message)
        heartbeat = _Heartbeat(self, claim) if claim.written else None  # (no lease to keep)
        try:
            turn = await self._dispatcher.handle(
                message,
                sink,
                claim=claim,
                deliver_later=message.channel in self._delivered,
            )
        except TurnRejected as e:
            log.info(
                "message refused channel=%s bot=%s message=%s: %s",
                message.channel,
                message.bot,
                message.external_id,
                e.message,
            )
            await self._finish(claim, "dead", f"refused: {e.code}: {e.message}")
            if raise_errors:
                raise
            return None
        except TurnFailed as e:
            await self._failed(claim, message, e)
            if raise_errors:
                raise
            return None
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            if implements(sink, LiveSink):
                await sink.close()
        self.counters.turns += 1
        to_send = (turn.deliver_later and turn.outbound) or turn.talk_to or turn.transfer
        if to_send and self._on_commit is not None:  # (a transfer may queue a webhook event)
            self._on_commit()
        return turn

    async def _gather(self, claim: Claim) -> Claim | None:
        """``claim`` with the messages that belong with it folded in (see
        :mod:`pipeline.gathering`); ``None`` when the turn cannot run now (the claim was
        lost, or the inbox failed: the message is given back and tried again)."""
        try:
            gathered = await self._inbox.gather(claim, gather)
        except StorageError as e:
            if claim.attempts >= self.policy.max_attempts:
                self.counters.parked += 1
                log.error("message parked after %d tries seq=%d: %s", claim.attempts, claim.seq, e)
                await self._finish(claim, "dead", f"retries exhausted: gathering: {e}")
                return None
            delay = self.policy.backoff(claim.attempts)
            log.warning("cannot gather seq=%d, again in %.1f s: %s", claim.seq, delay, e)
            try:
                await self._inbox.retry(claim, delay=delay, error=f"gathering: {e}")
            except StorageError as again:  # the lease expires and the message is leased again
                log.error("cannot give back seq=%d: %s", claim.seq, again)
            return None
        if gathered is None:
            log.warning("claim of seq=%d lost before its turn", claim.seq)
        elif gathered.merged != claim.merged:
            log.info(
                "messages gathered into one turn channel=%s bot=%s message=%s with=%d",
                claim.channel,
                claim.bot_id,
                claim.external_id,
                len(gathered.merged) - len(claim.merged),
            )
        return gathered

    def _sink(self, claim: Claim, message: InboundMessage) -> ReplySink:
        """Where a worker's turn sends its replies: a live stream to the provider for the
        model's answers, else nowhere (they are in the outbox)."""
        if self._live is not None and message.channel in self._delivered:
            live = self._live.sink(claim, message)
            if live is not None:
                return live
        return _DISCARD

    async def _failed(self, claim: Claim, message: InboundMessage, error: TurnFailed) -> None:
        cause = error.__cause__
        if isinstance(cause, ClaimLost):
            log.warning("claim lost seq=%d message=%s: %s", claim.seq, message.external_id, cause)
            return  # its new holder runs it
        if isinstance(cause, ConversationChanged):
            return  # nothing was written: its caller runs it again, written first
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
        if not claim.written:
            await self._write_for_retry(message, reason)
            return
        if claim.attempts >= self.policy.max_attempts:
            self.counters.parked += 1
            log.error(
                "message parked after %d tries channel=%s bot=%s message=%s: %s",
                claim.attempts,
                message.channel,
                message.bot,
                message.external_id,
                reason,
            )
            await self._finish(claim, "dead", f"retries exhausted: {reason}")
            return
        delay = self.policy.backoff(claim.attempts)
        self.counters.retried += 1
        log.warning(
            "turn retried in %.1f s (try %d) channel=%s bot=%s message=%s: %s",
            delay,
            claim.attempts,
            message.channel,
            message.bot,
            message.external_id,
            reason,
        )
        try:
            await self._inbox.retry(claim, delay=delay, error=reason)
        except StorageError as e:  # the lease expires and the message is leased again
            log.error("cannot give back seq=%d: %s", claim.seq, e)

    async def _write_for_retry(self, message: InboundMessage, reason: str) -> None:
        """A turn whose message was not written failed on our side: the message is written
        now, for the workers to run after the first backoff, as a written one's would be
        given back. Should that fail too, the request's error is all that is left: nothing
        was answered, and the sender may send it again."""
        delay = self.policy.backoff(1)
        self.counters.retried += 1
        log.warning(
            "turn retried in %.1f s (try 1) channel=%s bot=%s message=%s: %s",
            delay,
            message.channel,
            message.bot,
            message.external_id,
            reason,
        )
        try:
            await self._inbox.put(self._item(message, delay=delay))
        except StorageError as e:
            log.error("cannot write message %s for a retry: %s", message.external_id, e)

    async def _finish(self, claim: Claim, status: str, error: str | None) -> None:
        try:
            await self._inbox.finish(claim, status=status, error=error)
        except StorageError as e:  # the lease expires and the message is looked at again
            log.error("cannot finish seq=%d as %s: %s", claim.seq, status, e)

    async def _keep_lease(self, claim: Claim) -> None:
        """Extend a long turn's lease, now and every third of a lease, so that no other
        worker takes its message."""
        while True:
            try:
                if not await self._inbox.extend(claim, lease=self.policy.lease):
                    log.warning("lease of seq=%d lost while its turn runs", claim.seq)
                    return
            except StorageError as e:
                log.warning("cannot extend the lease of seq=%d: %s", claim.seq, e)
            await asyncio.sleep(self.policy.lease / 3)

    # -- the worker -------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for claimable messages now (a message was accepted, a slot freed)."""
        self._wake.set()

    def start(self) -> None:
        """Start the inbox worker in the running loop."""
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self, *, drain: float = 10.0) -> None:
        """Stop leasing; give running turns ``drain`` seconds, then cancel them (their
        messages are leased again by whichever instance runs next)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=drain)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    @property
    def busy(self) -> int:
        """Turns the worker is running now."""
        return len(self._running)

    async def _work(self) -> None:
        policy = self.policy
        while True:
            self._wake.clear()
            free = policy.workers - len(self._running) - self._reserved
            claims: list[Claim] = []
            if free > 0:
                starved, self._starved = self._starved, False  # (set again by accepts meanwhile)
                try:
                    claims = await self._inbox.claim(limit=free, lease=policy.lease)
                except StorageError as e:
                    self._starved = starved
                    log.warning("inbox unreachable, trying again: %s", e)
                    free = 0  # nothing learnt of what waits
                else:
                    if len(claims) == free:
                        self._starved = True  # more may wait for a slot
            for claim in claims:
                self._take_waiting((claim.bot_id, claim.channel, claim.conversation))
                self._start(claim, self._run_claimed(claim))
            if len(claims) < free:
                self._forget_waiting()
            if claims and len(claims) == free:
                await self._wait(policy.poll_interval)  # full: until a slot frees
            elif not claims:
                await self._wait(policy.poll_interval)
            # else: took fewer than asked for: look again at once for what arrived meanwhile

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _start(self, claim: Claim, turn: Coroutine[Any, Any, None]) -> None:
        key = (claim.bot_id, claim.channel, claim.conversation)
        task = asyncio.get_running_loop().create_task(turn)
        self._running.add(task)
        self._here[key] += 1
        task.add_done_callback(functools.partial(self._turn_done, key))

    def _turn_done(self, key: Conversation, task: asyncio.Task[None]) -> None:
        """A slot freed: the worker looks for work if a message of the turn's conversation
        waits for it, or one waits for a slot; any other end of a turn leaves it be (a look
        is a statement, and nearly every message is leased when it is accepted)."""
        self._running.discard(task)
        self._here[key] -= 1
        if not self._here[key]:
            del self._here[key]
        if self._starved or key in self._waiting:
            self._wake.set()

    # Conversations with messages accepted here that wait for a worker's lease (an earlier
    # message of theirs was active, or every slot was taken), and how many each. A message
    # leased elsewhere is never taken off: the count of a conversation with no turn running
    # here is forgotten after each look that found every due message (:meth:`_work`), when
    # only the end of a turn elsewhere can make its messages due, and polling finds them.

    def _take_waiting(self, key: Conversation) -> None:
        if self._waiting[key] > 1:
            self._waiting[key] -= 1
        else:
            self._waiting.pop(key, None)

    def _forget_waiting(self) -> None:
        for key in [k for k in self._waiting if k not in self._here]:
            del self._waiting[key]

    async def _run_claimed(self, claim: Claim) -> None:
        try:
            await self._run(claim, None, None, raise_errors=False)
        except Exception:  # a bug; the lease expires and the message is tried again
            log.exception("inbox worker failed on seq=%d", claim.seq)
