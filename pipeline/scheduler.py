"""Scheduled dialogs: a ``.bas`` with ``SET SCHEDULE`` runs at each occurrence, with no user.

Every gateway instance runs a :class:`Scheduler`; each occurrence is claimed by inserting its
row into ``scheduled_runs`` (primary key bot, dialog, due time), so exactly one instance runs
it however many are running.  An occurrence is only claimed while it is recent (``grace``):
after all instances were down, missed occurrences are skipped, not replayed in a burst.  Rows
older than ``keep`` (a day by default, far beyond ``grace``) are deleted as the scheduler goes,
so a job every second does not grow the table without end.

A job runs like a dialog on a session of its own that is never saved: its TALK output goes
nowhere, ``TALK TO`` queues a proactive message at once (named by the occurrence, so a
rerun of the same occurrence does not queue it twice), a HEAR ends it, and its errors are
logged with ``file:line``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable

import asyncpg

from basic import BasicRuntimeError, Interpreter
from basic.errors import HostUnavailable
from basic.schedule import next_occurrence
from channels.base import InboundMessage, OutboundMessage
from pipeline.bots import Bot, BotRegistry
from pipeline.dialog_host import JOB_CHANNEL, DialogHost
from pipeline.services import Services
from pipeline.turn import Turn
from storage.base import Session

log = logging.getLogger(__name__)


_CLAIM = """
INSERT INTO scheduled_runs (bot_id, dialog, due_at, instance) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
"""

_PRUNE = "DELETE FROM scheduled_runs WHERE due_at < $1"
_PRUNE_EVERY = dt.timedelta(minutes=10)


class _Nowhere:
    """Where a job's replies go: nowhere (a job has no user to answer)."""

    async def delta(self, text: str) -> None:
        pass

    async def message(self, message: OutboundMessage) -> None:
        log.debug("scheduled dialog said (not sent): %s", message.text)


class Scheduler:
    """Runs the scheduled dialogs of every bot of ``registry``, claiming each occurrence in
    PostgreSQL.  ``start`` it once the stores are open; ``stop`` it before they close."""

    def __init__(
        self,
        registry: BotRegistry,
        services: Services,
        pool: asyncpg.Pool,
        *,
        instance: str | None = None,
        tick: float = 0.2,
        grace: float = 60.0,
        keep: float = 86400.0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.registry = registry
        self.services = services
        self.pool = pool
        self.instance = instance or uuid.uuid4().hex[:12]
        self.tick = tick
        self.grace = dt.timedelta(seconds=grace)
        self.keep = max(dt.timedelta(seconds=keep), 2 * self.grace)
        self._pruned: dt.datetime | None = None
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._next: dict[tuple[str, str, str], dt.datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
                now = self.clock()
                if self._pruned is None or now - self._pruned >= _PRUNE_EVERY:
                    await self.prune()
            except Exception:  # a store outage: the next tick tries again
                log.exception("scheduler tick failed")
            await asyncio.sleep(self.tick)

    async def prune(self) -> int:
        """Delete the claims of occurrences older than ``keep``; how many were deleted.  No
        instance claims those any more (they are far past ``grace``)."""
        now = self.clock()
        result: str = await self.pool.execute(_PRUNE, now - self.keep)
        self._pruned = now
        return int(result.rsplit(" ", 1)[-1])

    async def run_due(self) -> int:
        """Claim and start every occurrence due by now; how many this instance claimed."""
        now = self.clock()
        claimed = 0
        for name in self.registry.names():
            bot = self.registry.get(name)
            if bot is None:
                continue
            for dialog, crons in bot.schedules.items():
                for cron in crons:
                    claimed += await self._due(bot, dialog, cron, now)
        return claimed

    async def _due(self, bot: Bot, dialog: str, cron: str, now: dt.datetime) -> int:
        key = (bot.name, dialog, cron)
        due = self._next.get(key)
        if due is None:  # first look: the next occurrence from now on
            due = self._next[key] = _utc(next_occurrence(cron, _naive(now)))
        claimed = 0
        while due <= now:
            if now - due <= self.grace and await self._claim(bot.name, dialog, due):
                claimed += 1
                task = asyncio.create_task(self._run(bot, dialog, due))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            due = _utc(next_occurrence(cron, _naive(due)))
        self._next[key] = due
        return claimed

    async def _claim(self, bot: str, dialog: str, due: dt.datetime) -> bool:
        result: str = await self.pool.execute(_CLAIM, bot, dialog, due, self.instance)
        return result.endswith(" 1")

    async def _run(self, bot: Bot, dialog: str, due: dt.datetime) -> None:
        job_id = f"{dialog}@{due.isoformat()}"
        message = InboundMessage(
            channel=JOB_CHANNEL,
            bot=bot.name,
            conversation=job_id,
            sender=JOB_CHANNEL,
            external_id=job_id,
            text="",
        )
        session = Session(
            id=str(uuid.uuid4()), bot_id=bot.name, channel=JOB_CHANNEL, user_id=JOB_CHANNEL
        )
        turn = Turn(message=message, bot=bot, services=self.services, sink=_Nowhere())
        turn.session = session
        interpreter = Interpreter(
            bot.programs,
            DialogHost(turn),
            limits=bot.limits,
            globals=bot.globals,
            broken=bot.broken,
        )
        try:
            outcome = await interpreter.start(dialog)
            if outcome.state is not None:
                log.warning(
                    "scheduled dialog %s of bot %s waited for a user (HEAR)", dialog, bot.name
                )
        except (BasicRuntimeError, HostUnavailable) as e:
            log.error("scheduled dialog bot=%s due=%s: %s", bot.name, due.isoformat(), e)
        except Exception:
            log.exception("scheduled dialog %s of bot %s failed", dialog, bot.name)


def _naive(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(tzinfo=None)


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC)
