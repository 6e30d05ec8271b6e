"""The delivery worker: committed replies from the outbox to each provider.

Each leased row is one reply. It is rendered for its channel (format, split,
buttons), and its parts are sent in order, each paced under the channel's
limits, marked as on its way before the request and recorded with the
provider's id once confirmed, so a restart goes on from the next part and
never sends a confirmed part again. A failed send is decided by
:class:`~channels.retry.RetryPolicy`: retried later (honouring
``retry_after``), parked as ``dead`` with its reason, or parked as
``unknown`` when the request left and no answer came (it may have arrived:
it is logged, not repeated).

WhatsApp allows free-form messages only within 24 hours of the user's last
message. Outside that window the reply is not attempted: the bot's template
(``whatsapp-template``, ``whatsapp-template-language``) is sent instead, with
the reply's text as its ``{{1}}``, or, with no template configured, the reply
is parked with that reason. A provider's "window closed" answer (131047,
63016) closes the window and takes the same way.

A reply streamed live while its turn ran (:mod:`pipeline.live_replies`) comes with what
went out already: its row starts with those parts confirmed, and its message's ``live``
record names the Telegram message being edited. The rest is planned by
:func:`channels.streaming.final_parts`: the final, formatted edit of that message (never
sooner than the edit interval after the last live edit, whichever instance made it), new
messages past the limit, the WhatsApp and SMS paragraphs not yet sent. An edit is safe to
repeat: it is not marked as on its way, so a crash during it sends it again, and a
timeout retries it; a message that can no longer be edited (deleted, too old) gets the
text as a new message instead.

A reply carrying files (``SEND FILE TO``) is planned by :mod:`pipeline.media_delivery`:
each file the channel takes natively is a part of its own (its upload id kept on the row,
so a retry does not upload it again), then the text left, with links for the files the
channel cannot take.

A channel whose adapter has ``send_part`` (the generic webhook) gets each part with an id
that stays the same on every retry (bot, row and part), for its receiver to drop
duplicates. A row whose message is an event (``{"event": …}``) goes to the adapter's
``send_event`` as it is. Once a proactive message (``origin`` api or talk-to) reached its
provider, a ``delivered`` event is queued for the bot's generic webhook, when it has one on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from channels.base import (
    Channel,
    OutboundMessage,
    OutcomeUnknown,
    ProviderUnavailable,
    RenderedPart,
    SendError,
    SendRefused,
    SendResult,
    TemplateRef,
    WindowClosed,
)
from channels.outbound_media import FileSender
from channels.pacing import Pacer
from channels.retry import Disposition, RetryPolicy
from channels.streaming import FinalPart, LiveResult, final_parts
from pipeline.media_delivery import UPLOADS, DeliveryFiles, FileStep
from pipeline.message_codec import outbound_from_json
from storage.base import ConversationWindows, Outbox, OutboxRow, StorageError

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
WHATSAPP_INTERACTIVE_TEXT = 1024  # the body of a WhatsApp message with buttons or a list
_TEMPLATE_PARAM = 1024
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How many replies are sent at once, how long a lease holds, how often to look."""

    concurrency: int = 64
    lease: float = 60.0
    poll_interval: float = 1.0
    window_channels: frozenset[str] = frozenset({"whatsapp"})


# (bot, channel) -> the adapter, or None when the channel is off or disabled.
AdapterLookup = Callable[[str, str], Channel | None]
# bot -> its resolved provider configuration (for the template keys).
ConfigLookup = Callable[[str], Mapping[str, str]]
# Queue an event row: (bot, channel, conversation, message).
EventQueue = Callable[[str, str, str, dict[str, Any]], Awaitable[object]]

EVENT_CHANNEL = "generic"
PROACTIVE_ORIGINS = frozenset({"api", "talk-to"})


@runtime_checkable
class IdentifiedSends(Protocol):
    """An adapter that carries our id of each part, and events (the generic webhook)."""

    async def send_part(
        self, conversation: str, part: RenderedPart, *, event_id: str, reply_to: str | None = None
    ) -> SendResult: ...

    async def send_event(
        self, event: str, conversation: str, fields: Mapping[str, Any], *, event_id: str
    ) -> SendResult: ...


@dataclass(slots=True)
class DeliveryCounters:
    parts: int = 0
    replies: int = 0
    retried: int = 0
    parked: int = 0
    unknown: int = 0
    templates: int = 0


class DeliveryWorker:
    """Sends the outbox's pending replies; one per conversation at a time, in order."""

    def __init__(
        self,
        outbox: Outbox,
        windows: ConversationWindows,
        adapters: AdapterLookup,
        *,
        config: ConfigLookup = lambda bot: {},
        events: EventQueue | None = None,
        policy: DeliveryPolicy | None = None,
        retry: RetryPolicy | None = None,
        files: DeliveryFiles | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._outbox = outbox
        self._windows = windows
        self._adapters = adapters
        self._config = config
        self._events = events
        self.policy = policy or DeliveryPolicy()
        self._retry = retry or RetryPolicy()
        self._now = now
        self._files = files
        self._pacers: dict[tuple[str, str], Pacer] = {}
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[bool]] = set()
        self._commits = 0  # wake-ups from outside: each may have queued replies
        self._full = False  # the last lease took as many rows as there was room for
        self._loop_task: asyncio.Task[None] | None = None
        self.counters = DeliveryCounters()

    # -- lifecycle ---------------------------------------------------------------------------

    def wake(self) -> None:
        """A turn committed replies: look now rather than at the next poll."""
        self._commits += 1
        self._wake.set()

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._work(), name="delivery")

    async def stop(self, *, drain: float = 10.0) -> None:
        """Stop leasing; give running sends ``drain`` seconds, then cancel them (their
        rows are leased: another instance, or the next start, goes on with them)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=drain)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _work(self) -> None:
        # One lease per wake-up, not one per reply sent: a reply that went out wakes the
        # loop only when something may be due that no other wake-up announces (see _done).
        # Cleared before the lease, so that a commit during it is not missed.
        while True:
            self._wake.clear()
            free = self.policy.concurrency - len(self._running)
            rows: list[OutboxRow] = []
            if free > 0:
                try:
                    rows = await self._outbox.claim(limit=free, lease=self.policy.lease)
                except StorageError as e:
                    log.error(
                        "outbox unavailable: %s; again in %.0f s", e, self.policy.poll_interval
                    )
            self._full = free <= len(rows)  # more may be due than there was room for
            for row in rows:
                task = asyncio.create_task(self.deliver(row), name=f"deliver-{row.seq}")
                self._running.add(task)
                task.add_done_callback(self._done)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel
            # that comes as the event is set (a send finishing), and stop() then waited
            # for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.policy.poll_interval):
                    await self._wake.wait()

    def _done(self, task: asyncio.Task[bool]) -> None:
        """A reply is done with: look again if that may have made another one due."""
        self._running.discard(task)
        quiet = not task.cancelled() and task.exception() is None and task.result()
        # Unless it was sent and nothing waited behind it (see deliver), or a slot freed while
        # replies were left unleased, nothing new is due, and no lease is made.
        if not quiet or self._full:
            self._wake.set()

    # -- one reply ---------------------------------------------------------------------------

    async def deliver(self, row: OutboxRow) -> bool:
        """Send the rest of ``row``'s parts; every outcome is recorded on the row.

        ``True`` when the row is sent and no later reply of its conversation waited behind
        it: its last record said so, and no turn committed replies while that record was
        being made (whose rows that record's statement may not have seen). ``False``
        otherwise (retried, parked, left to a new lease holder, or a reply may wait): the
        worker then looks for due rows at once."""
        try:
            return await self._deliver(row)
        except StorageError as e:
            # The lease runs out and the row is handed out again (or marked unknown
            # if a part was on its way): nothing is lost, nothing sent twice.
            log.error("outbox row %d: store unavailable while sending: %s", row.seq, e)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("outbox row %d: unexpected error while sending", row.seq)
            try:
                await self._outbox.park(row, status="unknown", error=f"unexpected error: {e!r}")
            except StorageError as store_error:  # the lease runs out; the claim marks it
                log.error("outbox row %d: could not be parked: %s", row.seq, store_error)
        return False

    async def _deliver(self, row: OutboxRow) -> bool:
        adapter = self._adapters(row.bot_id, row.channel)
        if adapter is None:
            error = ProviderUnavailable(f"channel {row.channel} of bot {row.bot_id} is not on")
            await self._failed(row, error, "channel-off")
            return False
        if "event" in row.message:
            await self._send_event(row, adapter)
            return False
        message = outbound_from_json(row.message)
        if message.template is not None:  # SEND TEMPLATE: allowed in the window and out of it
            await self._send_named_template(row, adapter, message.template)
            return False
        if row.channel in self.policy.window_channels and not await self._window_open(row):
            await self._send_template(row, adapter, message, "the 24-hour window is closed")
            return False
        files: tuple[FileStep, ...] = ()
        if message.attachments:  # SEND FILE TO: its files first, then what text is left
            if self._files is None:
                await self._failed(row, SendRefused("no file store to send files from"), "file")
                return False
            plan = await self._files.plan(adapter, message)
            files, message = plan.files, dataclasses.replace(message, text=plan.text)
        live = _live_record(row, message)
        texts = self._plan(adapter, message, live) if message.text.strip() else []
        steps: list[FileStep | FinalPart | None] = [*files, *texts]
        done = False  # the last part's record marked the row sent
        for index, step in enumerate(steps[row.parts_sent :], start=row.parts_sent):
            if step is None:  # sent live by the turn: recorded with its row
                continue
            if isinstance(step, FileStep):
                sent = await self._send_file(row, adapter, step)
            elif step.edit_of is not None:
                sent = await self._edit(row, adapter, step, live)
            else:
                done = index == len(steps) - 1
                sent = await self._send(
                    row, adapter, step.part, index=index, reply_to=message.reply_to, done=done
                )
            if sent is None:
                return False
            row = sent
        if not done:
            await self._outbox.sent(row)
        self.counters.replies += 1
        await self._delivered(row)
        return done and not row.has_next

    async def _send_event(self, row: OutboxRow, adapter: Channel) -> None:
        if not isinstance(adapter, IdentifiedSends):
            await self._failed(row, SendRefused(f"{row.channel} does not take events"), "event")
            return
        fields = {k: v for k, v in row.message.items() if k != "event"}
        event = str(row.message["event"])
        event_id = f"evt-{row.bot_id}-{row.seq}"
        async with self._pacer(row, adapter).sending(row.conversation):
            if not await self._outbox.start_part(row, lease=self.policy.lease):
                return
        try:
            result = await adapter.send_event(event, row.conversation, fields, event_id=event_id)
        except SendError as e:
            await self._failed(row, e, "event")
            return
        self.counters.parts += 1
        await self._outbox.part_sent(row, result.provider_id, done=True)

    async def _delivered(self, row: OutboxRow) -> None:
        """Tell the bot's generic webhook that a proactive message reached its provider."""
        if (
            self._events is None
            or row.channel == EVENT_CHANNEL
            or row.message.get("origin") not in PROACTIVE_ORIGINS
            or self._adapters(row.bot_id, EVENT_CHANNEL) is None
        ):
            return
        event = {
            "event": "delivered",
            "outbox_id": row.seq,
            "channel": row.channel,
            "to": row.conversation,
            "provider_ids": list(row.provider_ids),
        }
        try:
            await self._events(row.bot_id, EVENT_CHANNEL, row.conversation, event)
        except StorageError as e:  # the message itself is sent and recorded
            log.error("outbox row %d: delivered event not queued: %s", row.seq, e)
            return
        self.wake()  # the event's row is due now

    def _plan(
        self, adapter: Channel, message: OutboundMessage, live: LiveResult | None
    ) -> list[FinalPart | None]:
        """The reply's requests in order, ``None`` for the parts sent live."""
        limit = WHATSAPP_INTERACTIVE_TEXT if adapter.name == "whatsapp" else None
        steps = final_parts(
            message.text,
            live,
            adapter.capabilities,
            suggestions=message.suggestions,
            interactive_text_limit=limit,
        )
        done: list[FinalPart | None] = [None] * (live.parts_sent if live is not None else 0)
        return done + list(steps)

    def pacer(self, bot: str, channel: str, adapter: Channel) -> Pacer:
        """The pacer of one sender: every send and edit to it, live ones too, waits on it."""
        key = (bot, channel)
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = Pacer(adapter.capabilities)
        return pacer

    def _pacer(self, row: OutboxRow, adapter: Channel) -> Pacer:
        return self.pacer(row.bot_id, row.channel, adapter)

    async def _edit(
        self, row: OutboxRow, adapter: Channel, step: FinalPart, live: LiveResult | None
    ) -> OutboxRow | None:
        """The final edit of a message the turn streamed live; ``None`` as for a send."""
        assert step.edit_of is not None
        pacer = self._pacer(row, adapter)
        await pacer.wait(row.conversation)
        if live is not None and live.at is not None:
            # The edit interval after the last live edit, made here or on another instance.
            interval = adapter.capabilities.min_edit_interval
            await asyncio.sleep(min(interval, max(0.0, live.at + interval - time.time())))
        if not await self._outbox.start_part(row, lease=self.policy.lease, in_flight=False):
            log.warning("outbox row %d: lease lost before an edit; left to its new holder", row.seq)
            return None
        try:
            await adapter.edit(row.conversation, step.edit_of, step.part)
        except SendRefused as e:
            log.warning(
                "outbox row %d: message %s cannot be edited (%s): sent as a new message",
                row.seq,
                step.edit_of,
                e,
            )
            return await self._send(row, adapter, step.part, index=row.parts_sent)
        except OutcomeUnknown as e:
            # An edit made twice shows the same text: a timeout is retried, not parked.
            await self._failed(row, ProviderUnavailable(str(e), code=e.code), "edit")
            return None
        except SendError as e:
            pacer.back_off(e, row.conversation)
            await self._failed(row, e, "edit")
            return None
        self.counters.parts += 1
        return await self._outbox.part_sent(row, step.edit_of)

    async def _send(
        self,
        row: OutboxRow,
        adapter: Channel,
        part: RenderedPart,
        *,
        index: int = 0,
        reply_to: str | None = None,
        done: bool = False,
    ) -> OutboxRow | None:
        """One part: paced, marked on its way, sent, recorded (with ``done``, as the reply's
        last: the row sent in the same record). ``None`` when the row is done with for now
        (failed, parked, or its lease lost)."""
        pacer = self._pacer(row, adapter)
        # Paced and marked on its way two at a time at most (see channels.pacing), so a
        # slow database cannot bunch the requests at the provider.
        async with pacer.sending(row.conversation):
            if not await self._outbox.start_part(row, lease=self.policy.lease):
                log.warning(
                    "outbox row %d: lease lost before a send; left to its new holder", row.seq
                )
                return None
        try:
            result: SendResult
            if isinstance(adapter, IdentifiedSends):
                event_id = f"msg-{row.bot_id}-{row.seq}-{index}"
                result = await adapter.send_part(
                    row.conversation, part, event_id=event_id, reply_to=reply_to
                )
            else:
                result = await adapter.send(row.conversation, part)
        except WindowClosed as e:
            await self._windows.close_window(row.bot_id, row.channel, row.conversation)
            await self._outbox.retry(row, delay=0.0, error=f"window closed: {e}")
            log.info("outbox row %d: %s says the window is closed", row.seq, row.channel)
            return None
        except SendError as e:
            pacer.back_off(e, row.conversation)
            await self._failed(row, e, "send")
            return None
        self.counters.parts += 1
        commits = self._commits
        row = await self._outbox.part_sent(row, result.provider_id, done=done)
        if commits != self._commits:  # replies committed meanwhile: one may wait behind it
            row = dataclasses.replace(row, has_next=True)
        return row

    async def _send_file(
        self, row: OutboxRow, adapter: Channel, step: FileStep
    ) -> OutboxRow | None:
        """One file, sent natively as one part (see :mod:`pipeline.media_delivery`): paced,
        marked on its way, recorded; its upload id kept on the row for a retry."""
        assert self._files is not None and isinstance(adapter, FileSender)
        try:
            await self._files.check(step.attachment)
        except SendError as e:
            await self._failed(row, e, "file")
            return None
        uploads = dict(row.message.get(UPLOADS) or {})
        position = str(step.position)

        async def uploaded(upload_id: str) -> None:
            uploads[position] = upload_id
            await self._outbox.note(row, {UPLOADS: uploads})

        pacer = self._pacer(row, adapter)
        # An upload takes longer than a text: the lease allows for 256 KiB/s at least.
        lease = self.policy.lease + (step.attachment.size or 0) / (256 * 1024)

        async def sending() -> None:
            # Only the request that reaches the user is on its way; an upload before it is
            # not (a crash during one hands the row out again rather than as unknown).
            if not await self._outbox.start_part(row, lease=lease):
                raise ProviderUnavailable("the lease was lost before the send", code="lease")

        file = self._files.outbound_file(
            step, upload_id=uploads.get(position), uploaded=uploaded, sending=sending
        )
        async with pacer.sending(row.conversation):
            if not await self._outbox.start_part(row, lease=lease, in_flight=False):
                log.warning(
                    "outbox row %d: lease lost before a file; left to its new holder", row.seq
                )
                return None
        try:
            result = await adapter.send_file(row.conversation, file)
        except SendError as e:
            pacer.back_off(e, row.conversation)
            await self._failed(row, e, "file")
            return None
        self.counters.parts += 1
        return await self._outbox.part_sent(row, result.provider_id)

    async def _failed(self, row: OutboxRow, error: SendError, what: str) -> None:
        decision = self._retry.decide(error, row.attempts)
        where = f"outbox row {row.seq} ({row.bot_id}/{row.channel} {row.conversation})"
        if decision.disposition is Disposition.RETRY:
            self.counters.retried += 1
            log.warning("%s: %s; again in %.1f s", where, decision.reason, decision.delay)
            await self._outbox.retry(row, delay=decision.delay, error=decision.reason)
        elif decision.disposition is Disposition.UNKNOWN:
            self.counters.unknown += 1
            log.warning("%s: outcome unknown, not sent again: %s", where, decision.reason)
            await self._outbox.park(row, status="unknown", error=decision.reason)
        else:
            self.counters.parked += 1
            log.error("%s: parked after %s: %s", where, what, decision.reason)
            await self._outbox.park(row, status="dead", error=decision.reason)

    # -- the 24-hour window ------------------------------------------------------------------

    async def _window_open(self, row: OutboxRow) -> bool:
        last = await self._windows.last_inbound(row.bot_id, row.channel, row.conversation)
        return last is not None and self._now() - last < WINDOW

    async def _send_named_template(
        self, row: OutboxRow, adapter: Channel, template: TemplateRef
    ) -> None:
        """A template the bot named (SEND TEMPLATE, the send API): sent as it is."""
        send_template = getattr(adapter, "send_template", None)
        if send_template is None:
            await self._failed(
                row, SendRefused(f"{row.channel} has no message templates"), "template"
            )
            return
        if row.parts_sent:  # sent before a crash, its outcome recorded: not sent twice
            await self._outbox.sent(row)
            return
        await self._pacer(row, adapter).wait(row.conversation)
        if not await self._outbox.start_part(row, lease=self.policy.lease):
            return
        try:
            result = await send_template(
                row.conversation, template.name, template.language, template.params, template.named
            )
        except SendError as e:
            await self._failed(row, e, "template")
            return
        self.counters.templates += 1
        row = await self._outbox.part_sent(row, result.provider_id, done=True)
        log.info("outbox row %d: template %r sent", row.seq, template.name)
        await self._delivered(row)

    async def _send_template(
        self, row: OutboxRow, adapter: Channel, message: OutboundMessage, why: str
    ) -> None:
        config = self._config(row.bot_id)
        name = config.get("whatsapp-template", "").strip()
        send_template = getattr(adapter, "send_template", None)
        if not name or send_template is None:
            self.counters.parked += 1
            reason = f"{why} and no whatsapp-template is configured"
            log.error("outbox row %d: parked: %s", row.seq, reason)
            await self._outbox.park(row, status="dead", error=reason)
            return
        if row.parts_sent:  # the window closed mid-reply: the rest is not sent
            await self._outbox.park(row, status="dead", error=f"{why} after part {row.parts_sent}")
            return
        language = config.get("whatsapp-template-language", "").strip() or "en_US"
        text = _SPACES.sub(" ", message.text).strip()[:_TEMPLATE_PARAM]
        params = (text,) if text else ()
        async with self._pacer(row, adapter).sending(row.conversation):
            if not await self._outbox.start_part(row, lease=self.policy.lease):
                return
        try:
            result = await send_template(row.conversation, name, language, params)
        except SendError as e:
            await self._failed(row, e, "template")
            return
        self.counters.templates += 1
        row = await self._outbox.part_sent(row, result.provider_id, done=True)
        log.info("outbox row %d: %s, template %r sent instead", row.seq, why, name)
        await self._delivered(row)


def _live_record(row: OutboxRow, message: OutboundMessage) -> LiveResult | None:
    """What the turn of ``row`` streamed live of its message (``None``: nothing)."""
    data = row.message.get("live")
    if not data:
        return None
    try:
        return LiveResult.from_json(data, message.text)
    except ValueError as e:
        # Unreadable: its parts count as sent (the row says so); the rest goes as new sends.
        log.error("outbox row %d: live record unreadable (%s)", row.seq, e)
        return None
