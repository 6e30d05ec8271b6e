"""The queue timeout: conversations whose agent went silent go back to their bot.

Every gateway instance runs a :class:`HandoffSweeper`; each looks every ``interval`` seconds
for open handoffs whose agent has said nothing for the bot's ``queue-timeout-minutes``
(counted from the transfer, the take, or the agent's last message) and returns them, with
the bot's ``queue-timeout-message`` to the user. The state is the database's (a row's last
agent activity), so a restart loses nothing, and one conditional update per bot decides
which instance returns each conversation: the user is told once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pipeline.handoff import HandoffDesk
from storage.base import StorageError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0


class HandoffSweeper:
    def __init__(self, desk: HandoffDesk, *, interval: float = DEFAULT_INTERVAL) -> None:
        self.desk = desk
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="handoff-sweeper"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> int:
        """Return the abandoned conversations now; how many."""
        return len(await self.desk.expire())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except StorageError as e:
                log.warning("handoff timeouts not checked: %s; again in %.0f s", e, self.interval)
            except Exception:  # a bug: logged, and the next sweep tries again
                log.exception("handoff sweep failed")
