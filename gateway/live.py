"""Live news for open sockets, from whichever instance it comes: one pub/sub subscription
per channel per instance, fanned out to this instance's sockets that listen for it.

A subscription per socket would cost a Redis connection each (see
:class:`storage.redis.RedisPubSub`); here an instance holds one per channel for its whole
life, and a socket only registers a mailbox under a key (a bot, a web user) while it is
open. A lost subscription (Redis restarting) is made again with a growing pause; news
published meanwhile is missed, which is why consoles and the widget reload what they show
from the stores when they reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.handoff import LIVE_CHANNEL, WEB_PUSH_CHANNEL
from storage.base import PubSub, StorageError

log = logging.getLogger(__name__)

MAILBOX_SIZE = 1000
RETRY_CAP = 30.0

KeyOf = Callable[[dict[str, Any]], Hashable | None]
Mailbox = asyncio.Queue[dict[str, Any]]


def new_mailbox() -> Mailbox:
    return asyncio.Queue(MAILBOX_SIZE)


class Fanout:
    """One channel's news, by key, to the mailboxes of this instance's listeners."""

    def __init__(self, pubsub: PubSub, channel: str, key: KeyOf) -> None:
        self._pubsub = pubsub
        self.channel = channel
        self._key = key
        self._listeners: dict[Hashable, set[Mailbox]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # subscribed (again)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"fanout-{self.channel}"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def listen(self, key: Hashable) -> Iterator[Mailbox]:
        """A mailbox of the news under ``key`` for the ``with`` block (in place when the
        block is entered)."""
        mailbox = new_mailbox()
        self.register(key, mailbox)
        try:
            yield mailbox
        finally:
            self.unregister(key, mailbox)

    def register(self, key: Hashable, mailbox: Mailbox) -> None:
        self._listeners.setdefault(key, set()).add(mailbox)

    def unregister(self, key: Hashable, mailbox: Mailbox) -> None:
        listeners = self._listeners.get(key)
        if listeners is not None:
            listeners.discard(mailbox)
            if not listeners:
                del self._listeners[key]

    def listening(self, key: Hashable) -> int:
        return len(self._listeners.get(key, ()))

    async def _run(self) -> None:
        pause = 0.5
        while True:
            try:
                async with self._pubsub.subscribe(self.channel) as messages:
                    self.ready.set()
                    pause = 0.5
                    async for raw in messages:
                        self._dispatch(raw)
            except StorageError as e:
                log.warning("live news on %s lost: %s; again in %.1f s", self.channel, e, pause)
            self.ready.clear()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_CAP)

    def _dispatch(self, raw: bytes) -> None:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("unreadable news on %s dropped", self.channel)
            return
        if not isinstance(event, dict):
            return
        key = self._key(event)
        for mailbox in tuple(self._listeners.get(key, ())) if key is not None else ():
            if mailbox.full():  # a socket that stopped reading loses its oldest news
                mailbox.get_nowait()
            mailbox.put_nowait(event)


class Follower:
    """One socket's news under a key that may change (a web user's socket learns its user
    with the first message of an app): one mailbox, pumped to ``send`` in order."""

    def __init__(self, fanout: Fanout, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._fanout = fanout
        self._send = send
        self._mailbox = new_mailbox()
        self._key: Hashable | None = None
        self._pump = asyncio.get_running_loop().create_task(self._run())

    def follow(self, key: Hashable | None) -> None:
        if key == self._key:
            return
        if self._key is not None:
            self._fanout.unregister(self._key, self._mailbox)
        self._key = key
        if key is not None:
            self._fanout.register(key, self._mailbox)

    async def close(self) -> None:
        self.follow(None)
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump

    async def _run(self) -> None:
        while True:
            event = await self._mailbox.get()
            try:
                await self._send(event)
            except (ConnectionError, RuntimeError) as e:  # the socket is closing
                log.debug("live news not sent: %s", e)


@dataclass(frozen=True, slots=True)
class LiveFeeds:
    """The instance's fanouts: handoff news for agents (by bot), pushes to web users (by
    bot, channel and user)."""

    agents: Fanout
    users: Fanout

    def start(self) -> None:
        self.agents.start()
        self.users.start()

    async def stop(self) -> None:
        await self.agents.stop()
        await self.users.stop()

    async def wait_ready(self, seconds: float) -> bool:
        """Whether both subscriptions are in place within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self.agents.ready.wait()
                await self.users.ready.wait()
        except TimeoutError:
            return False
        return True


def user_key(bot: str, channel: str, user_id: str) -> tuple[str, str, str]:
    return (bot, channel, user_id)


def live_feeds(pubsub: PubSub) -> LiveFeeds:
    def by_bot(event: dict[str, Any]) -> Hashable | None:
        bot = event.get("bot")
        return bot if isinstance(bot, str) else None

    def by_user(event: dict[str, Any]) -> Hashable | None:
        bot, channel, user = event.get("bot"), event.get("channel"), event.get("user_id")
        if isinstance(bot, str) and isinstance(channel, str) and isinstance(user, str):
            return user_key(bot, channel, user)
        return None

    return LiveFeeds(
        agents=Fanout(pubsub, LIVE_CHANNEL, by_bot),
        users=Fanout(pubsub, WEB_PUSH_CHANNEL, by_user),
    )
