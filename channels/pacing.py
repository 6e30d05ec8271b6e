"""Pacing one sender's sends under its provider's rate limits.

One :class:`Pacer` per sender (a bot's Telegram token, a WhatsApp number, a
Twilio sender): a leaky bucket for the sender's global rate and one per chat
for the per-chat rate, both ``aiolimiter.AsyncLimiter``. A provider's
``retry_after`` pushes a chat, or the whole sender, back until then.

A send that is recorded as on its way before it leaves (the outbox's parts) is paced with
:meth:`Pacer.sending`: at most two of a sender's sends at once between their pacing and
their record, so that a slow record (a busy database, a busy loop) holds the next sends
back instead of letting the sends it delayed arrive together. What a provider counts is
arrivals: paced, then recorded each on its own, 16 of 600 sends were refused by a fake
Telegram enforcing 30/s with a burst of 5; this way 3 of 3,000 and 24 of 10,000
(bench_broadcast; one at a time instead of two, the rate fell to 78 % while a broadcast
was being queued, against 97 %). Pacing after the record instead would leave the sends
waiting for the rate recorded as on their way: a crash would make them ``unknown``, never
sent, where this way only a send whose request was leaving is.

Memory stays bounded: a chat's limiter is dropped once its bucket has drained
(a fresh limiter then behaves exactly the same), and at most ``max_chats`` are
kept in any case.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from channels.base import Capabilities, RateLimited, SendError

# Provider codes whose flood control covers the whole sender, not one chat:
# WhatsApp's application, account, throughput, spam and registration limits,
# Twilio's account-wide 429. Any other rate limit is taken as the chat's own
# (WhatsApp's pair rate 131056, Telegram's per-chat flood control).
SENDER_WIDE_CODES = frozenset({"4", "80007", "130429", "131048", "133016", "20429"})

RECORDING = 2
_SWEEP_PER_CALL = 8  # drained chats dropped per call: amortized O(1)


def _limiter(rate: float) -> AsyncLimiter:
    """A bucket holding a tenth of a second's sends (at least one): a bucket of a
    whole second would let a burst of ``rate`` go out and then ``rate`` more within
    that same second (59 in one second at 30/s, measured), twice what providers allow."""
    capacity = max(1.0, rate / 10)
    return AsyncLimiter(capacity, capacity / rate)


@dataclass(slots=True)
class _Chat:
    limiter: AsyncLimiter | None
    blocked_until: float = 0.0


class Pacer:
    """Waits before each send so one sender stays under its provider's limits.

    Call :meth:`wait` right before every send (and edit) to ``chat``; call
    :meth:`back_off` with a :class:`~channels.base.RateLimited` the provider
    raised. Times are the running loop's clock.
    """

    def __init__(self, capabilities: Capabilities, *, max_chats: int = 10_000) -> None:
        if max_chats <= 0:
            raise ValueError("max_chats must be positive")
        self._global = (
            _limiter(capabilities.messages_per_second) if capabilities.messages_per_second else None
        )
        self._chat_rate = capabilities.chat_messages_per_second
        self._max_chats = max_chats
        self._chats: OrderedDict[str, _Chat] = OrderedDict()
        self._blocked_until = 0.0
        # Two sends of this sender at most between their pacing and their record (see
        # sending): one may be recorded while the other waits, and no more can bunch.
        self._recording = asyncio.Semaphore(RECORDING)

    @property
    def tracked_chats(self) -> int:
        """How many chats have state held (a limiter not yet drained, or a block)."""
        return len(self._chats)

    async def wait(self, chat: str) -> None:
        """Return when a send to ``chat`` is within every limit and past every block."""
        loop = asyncio.get_running_loop()
        state = self._chat(chat)
        if state.limiter is not None:
            await self._wait_blocks(loop, state)
            # The chat's turn first, so a busy chat does not hold global capacity.
            await state.limiter.acquire()
        if self._global is not None:
            await self._wait_blocks(loop, state)
            await self._global.acquire()
        # A back-off may have come in while this send queued for capacity.
        await self._wait_blocks(loop, state)
        self._sweep(loop.time())

    @asynccontextmanager
    async def sending(self, chat: str) -> AsyncIterator[None]:
        """Pace a send that is recorded before it leaves: the block is entered when the rate
        lets the send go, with at most one other send of this sender inside. Record the send
        inside, then send it after the block: a slow record holds the next sends back rather
        than letting them arrive together."""
        loop = asyncio.get_running_loop()
        state = self._chat(chat)
        await self._wait_blocks(loop, state)
        if state.limiter is not None:
            await state.limiter.acquire()
        while True:
            await self._wait_blocks(loop, state)
            await self._recording.acquire()
            try:
                if self._global is not None:
                    await self._global.acquire()
            except BaseException:
                self._recording.release()
                raise
            if not self._blocked(loop, state):
                break
            self._recording.release()  # a back-off came in meanwhile: wait it out unheld
        try:
            yield
        finally:
            self._recording.release()
            self._sweep(loop.time())

    def _blocked(self, loop: asyncio.AbstractEventLoop, state: _Chat) -> bool:
        return max(self._blocked_until, state.blocked_until) > loop.time()

    async def _wait_blocks(self, loop: asyncio.AbstractEventLoop, state: _Chat) -> None:
        # A deadline that a later back-off can only move further: sleep, then look again.
        while (delay := max(self._blocked_until, state.blocked_until) - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def defer(self, retry_after: float, *, chat: str | None = None) -> None:
        """Hold every send to ``chat`` (or, without ``chat``, of the whole sender)
        for ``retry_after`` seconds from now."""
        until = asyncio.get_running_loop().time() + max(retry_after, 0.0)
        if chat is None:
            self._blocked_until = max(self._blocked_until, until)
        else:
            state = self._chat(chat)
            state.blocked_until = max(state.blocked_until, until)

    def back_off(self, error: SendError, chat: str) -> None:
        """Apply a provider's flood control answer: the chat's, or the sender's when
        the code says the limit is sender-wide. Errors without ``retry_after`` are ignored."""
        if not isinstance(error, RateLimited) or error.retry_after is None:
            return
        sender_wide = error.code in SENDER_WIDE_CODES
        self.defer(error.retry_after, chat=None if sender_wide else chat)

    def _chat(self, chat: str) -> _Chat:
        state = self._chats.get(chat)
        if state is None:
            limiter = _limiter(self._chat_rate) if self._chat_rate else None
            state = self._chats[chat] = _Chat(limiter)
            while len(self._chats) > self._max_chats:
                # Over the cap the least recently used chat goes even if not drained:
                # at worst it gets one send early, and the provider's 429 covers that.
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat)
        return state

    def _sweep(self, now: float) -> None:
        for _ in range(_SWEEP_PER_CALL):
            if not self._chats:
                return
            chat, state = next(iter(self._chats.items()))
            drained = state.limiter is None or state.limiter.has_capacity(state.limiter.max_rate)
            if not drained or state.blocked_until > now:
                return
            del self._chats[chat]
