"""Telegram's polling mode (``telegram-mode,polling``): getUpdates instead of a webhook.

For development behind no public URL. Each polled update takes the webhook's
way into the inbox; an update is confirmed to Telegram only after it was
claimed, and one delivered again after a restart is dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.base import WebhookResult
from channels.hub import TELEGRAM, ChannelHub
from channels.telegram import TelegramChannel

log = logging.getLogger(__name__)

Handler = Callable[[str, WebhookResult], Awaitable[None]]


class TelegramPollers:
    """One polling task per bot whose Telegram channel is on in polling mode."""

    def __init__(self, hub: ChannelHub, handler: Handler) -> None:
        self._hub = hub
        self._handler = handler
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def sync(self, bot: str) -> None:
        """Stop ``bot``'s poller, if any, and start one if its channel now polls."""
        old = self._tasks.pop(bot, None)
        if old is not None:
            old.cancel()
            await asyncio.gather(old, return_exceptions=True)
        adapter = self._hub.adapter(bot, TELEGRAM)
        if isinstance(adapter, TelegramChannel) and adapter.mode == "polling":
            self._tasks[bot] = asyncio.create_task(self._run(bot, adapter), name=f"poll-{bot}")

    async def _run(self, bot: str, adapter: TelegramChannel) -> None:
        log.info("bot %s: polling Telegram for updates", bot)

        async def handle(result: WebhookResult) -> None:
            await self._handler(bot, result)

        try:
            await adapter.poll(bot, handle)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bot %s: Telegram polling stopped", bot)

    async def close(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
