"""Sends paced under per-chat and per-sender rates, pushed back by retry_after.

Run on a virtual-time loop: the timestamps are exact provider seconds.
"""

from __future__ import annotations

import asyncio

import pytest

from channels.base import Capabilities, RateLimited
from channels.pacing import Pacer
from tests.channels.virtual_time import run

TELEGRAM = Capabilities(max_text_length=4096, messages_per_second=30, chat_messages_per_second=1)
WHATSAPP_PAIR = Capabilities(max_text_length=4096, chat_messages_per_second=1 / 6)


async def _send_times(pacer: Pacer, chats: list[str]) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []
    for chat in chats:
        await pacer.wait(chat)
        times.append(round(loop.time(), 3))
    return times


@pytest.mark.parametrize(
    ("capabilities", "chats", "times"),
    [
        # One chat: one per second on Telegram...
        (TELEGRAM, ["a", "a", "a"], [0.0, 1.0, 2.0]),
        # ...other chats are not held up by it.
        (TELEGRAM, ["a", "b", "c", "a"], [0.0, 0.0, 0.0, 1.0]),
        # WhatsApp's pair rate: one message per 6 s to the same user.
        (WHATSAPP_PAIR, ["u", "u", "v"], [0.0, 6.0, 6.0]),
        (Capabilities(max_text_length=1), ["a"] * 3, [0.0, 0.0, 0.0]),
    ],
)
def test_chat_rates(capabilities: Capabilities, chats: list[str], times: list[float]) -> None:
    assert run(_send_times(Pacer(capabilities), chats)) == times


def test_the_global_rate_spans_chats() -> None:
    # 30/s across chats: a burst of 3 (a tenth of a second's worth), then one every 1/30 s.
    times = run(_send_times(Pacer(TELEGRAM), [f"c{i}" for i in range(90)]))
    assert times[2] == 0.0
    assert times[89] == pytest.approx(87 / 30, abs=0.04)
    # No second holds more than the rate and the small burst.
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 33


def test_concurrent_sends_to_one_chat_queue() -> None:
    async def scenario() -> list[float]:
        pacer = Pacer(TELEGRAM)
        return sorted(
            (await asyncio.gather(*(_send_times(pacer, ["a"]) for _ in range(4)))),
        )[-1]

    assert run(scenario()) == [3.0]


def test_retry_after_holds_that_chat_only() -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        pacer = Pacer(TELEGRAM)
        await pacer.wait("a")
        pacer.back_off(RateLimited("429", code="429", retry_after=5.0), "a")
        return await _send_times(pacer, ["b"]), await _send_times(pacer, ["a"])

    other, held = run(scenario())
    assert other == [0.0] and held == [5.0]


def test_a_sender_wide_limit_holds_every_chat() -> None:
    async def scenario() -> list[float]:
        pacer = Pacer(TELEGRAM)
        pacer.back_off(RateLimited("throughput", code="130429", retry_after=2.0), "a")
        return await _send_times(pacer, ["b", "c"])

    assert run(scenario()) == [2.0, 2.0]


def test_a_later_back_off_extends_a_wait_already_started() -> None:
    async def scenario() -> list[float]:
        pacer = Pacer(TELEGRAM)
        pacer.defer(1.0, chat="a")
        waiting = asyncio.create_task(_send_times(pacer, ["a"]))
        await asyncio.sleep(0.5)
        pacer.defer(3.0, chat="a")  # until 3.5
        return await waiting

    assert run(scenario()) == [3.5]


def test_idle_chats_are_dropped() -> None:
    async def scenario() -> tuple[int, int]:
        pacer = Pacer(TELEGRAM, max_chats=50)
        for i in range(200):
            await pacer.wait(f"chat{i}")
        at_peak = pacer.tracked_chats
        await asyncio.sleep(2)  # every bucket drains
        for i in range(10):  # each send drops a few drained chats
            await pacer.wait(f"late{i}")
        return at_peak, pacer.tracked_chats

    at_peak, after = run(scenario())
    assert at_peak <= 50
    assert after <= 10  # without dropping drained chats: still 50


# -- paced at the wire: recorded first, then sent when the rate allows ------------------------


class _Provider:
    """Telegram's global flood control: a token bucket of 30/s holding 5 (as the fake)."""

    def __init__(self, rate: float = 30.0, burst: int = 5) -> None:
        self.interval, self.burst = 1.0 / rate, burst
        self.tat = 0.0
        self.refused = 0
        self.arrivals: list[float] = []

    def arrive(self, now: float) -> None:
        tat = max(self.tat, now) + self.interval
        if now < tat - self.burst * self.interval:
            self.refused += 1
            return
        self.tat = tat
        self.arrivals.append(now)


async def _database(i: int) -> None:
    """A round trip between the pacing and the request: 2 ms, but the database stalls for
    0.3 s at each whole second after the first (a busy pool, a checkpoint): whatever comes
    to it then is answered when the stall ends."""
    now = asyncio.get_running_loop().time()
    second = int(now)
    if second >= 1 and now - second < 0.3:
        await asyncio.sleep(second + 0.3 - now)
    await asyncio.sleep(0.002)


def test_paced_one_record_at_a_time_a_slow_database_does_not_bunch_arrivals() -> None:
    async def scenario() -> tuple[_Provider, float]:
        pacer, provider = Pacer(TELEGRAM), _Provider()
        loop = asyncio.get_running_loop()

        async def send(i: int) -> None:
            async with pacer.sending(f"chat{i}"):
                await _database(i)  # marked on its way in the outbox
            provider.arrive(loop.time())
            await asyncio.sleep(0.3)  # the provider's answer holds nothing up

        await asyncio.gather(*(send(i) for i in range(300)))
        return provider, loop.time()

    provider, elapsed = run(scenario())
    assert provider.refused == 0
    assert len(provider.arrivals) == 300
    # The provider's rate, less what the stalls cost: time lost is not made up in a burst.
    assert 299 / 30 <= elapsed < 300 / 30 + 12 * 0.3


def test_paced_then_recorded_concurrently_the_same_sends_arrive_bunched() -> None:
    """The same load paced with ``wait()``, each then recorded on its own: the sends a stall
    held up arrive together and the provider refuses some (what :meth:`Pacer.sending` is
    for)."""

    async def scenario() -> _Provider:
        pacer, provider = Pacer(TELEGRAM), _Provider()
        loop = asyncio.get_running_loop()

        async def send(i: int) -> None:
            await pacer.wait(f"chat{i}")
            await _database(i)
            provider.arrive(loop.time())

        await asyncio.gather(*(send(i) for i in range(300)))
        return provider

    assert run(scenario()).refused > 0


def test_sending_keeps_each_chat_to_its_rate_and_honours_a_back_off() -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        pacer = Pacer(TELEGRAM)
        loop = asyncio.get_running_loop()
        a: list[float] = []
        for _ in range(2):
            async with pacer.sending("a"):
                a.append(round(loop.time(), 3))
        pacer.back_off(RateLimited("429", code="429", retry_after=5.0), "a")
        held = asyncio.create_task(_record(pacer, "a"))
        await asyncio.sleep(0)
        other = await _record(pacer, "b")  # not held behind "a"'s back-off
        return [*a, await held], [other]

    a, b = run(scenario())
    assert a == [0.0, 1.0, 6.0]  # one a second, then held until the back-off's end
    assert b == [1.0]


async def _record(pacer: Pacer, chat: str) -> float:
    async with pacer.sending(chat):
        return round(asyncio.get_running_loop().time(), 3)
