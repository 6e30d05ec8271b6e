"""The micro-batcher under the PostgreSQL stores: batching must never mix up callers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from storage.batching import Batcher


class Recorder:
    """A batch runner that records each batch and answers each item with a result or error."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.running = 0
        self.most_running = 0

    async def __call__(self, items: Sequence[str]) -> list[str | BaseException]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(self.delay)
        self.running -= 1
        if "explode" in items:
            raise RuntimeError("the whole batch failed")
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in items]


async def test_concurrent_callers_share_a_batch_and_get_their_own_results() -> None:
    run = Recorder()
    batcher: Batcher[str, str] = Batcher(run)
    results = await asyncio.gather(*(batcher.submit(x) for x in ["a", "b", "c"]))
    assert results == ["A", "B", "C"]
    assert run.batches == [["a", "b", "c"]]


async def test_an_item_error_reaches_only_its_caller() -> None:
    batcher: Batcher[str, str] = Batcher(Recorder())
    results = await asyncio.gather(
        batcher.submit("a"), batcher.submit("bad"), batcher.submit("c"), return_exceptions=True
    )
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError)


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    batcher: Batcher[str, str] = Batcher(Recorder())
    results = await asyncio.gather(
        batcher.submit("a"), batcher.submit("explode"), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await batcher.submit("later") == "LATER"


async def test_items_with_one_key_never_share_a_batch() -> None:
    run = Recorder()
    batcher: Batcher[str, str] = Batcher(run, key=lambda item: item[0])
    results = await asyncio.gather(*(batcher.submit(x) for x in ["a1", "b1", "a2", "a3"]))
    assert results == ["A1", "B1", "A2", "A3"]
    for batch in run.batches:
        assert len({item[0] for item in batch}) == len(batch)
    assert [item for batch in run.batches for item in batch if item[0] == "a"] == ["a1", "a2", "a3"]


class OrderRecorder(Recorder):
    """Records when each item's batch started and finished; a's batches are slow."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    async def __call__(self, items: Sequence[str]) -> list[str | BaseException]:
        self.events += [f"start {item}" for item in items]
        await asyncio.sleep(0.05 if any(item.startswith("a") for item in items) else 0)
        self.events += [f"end {item}" for item in items]
        return [item.upper() for item in items]


async def test_items_with_one_key_run_one_after_the_other_in_order() -> None:
    run = OrderRecorder()
    batcher: Batcher[str, str] = Batcher(run, key=lambda item: item[0], max_in_flight=4)
    first = asyncio.ensure_future(batcher.submit("a1"))
    await asyncio.sleep(0.01)  # a1's batch is running; batches to spare
    rest = await asyncio.gather(batcher.submit("a2"), batcher.submit("b1"), batcher.submit("a3"))
    assert [await first, *rest] == ["A1", "A2", "B1", "A3"]
    # b1 need not wait, but a2 starts only once a1 is done, and a3 once a2 is.
    assert run.events.index("start b1") < run.events.index("end a1")
    assert run.events.index("end a1") < run.events.index("start a2")
    assert run.events.index("end a2") < run.events.index("start a3")


@pytest.mark.parametrize(("max_in_flight", "max_batch"), [(1, 2), (2, 3)])
async def test_batches_are_bounded_in_size_and_number(max_in_flight: int, max_batch: int) -> None:
    run = Recorder(delay=0.01)
    batcher: Batcher[str, str] = Batcher(run, max_batch=max_batch, max_in_flight=max_in_flight)
    items = [f"x{i}" for i in range(10)]
    assert await asyncio.gather(*(batcher.submit(x) for x in items)) == [x.upper() for x in items]
    assert max(len(b) for b in run.batches) <= max_batch
    assert run.most_running <= max_in_flight


async def test_a_caller_that_gives_up_does_not_break_the_batch() -> None:
    batcher: Batcher[str, str] = Batcher(Recorder(delay=0.01))
    waiting = asyncio.ensure_future(batcher.submit("gone"))
    kept = asyncio.ensure_future(batcher.submit("kept"))
    await asyncio.sleep(0)
    waiting.cancel()
    assert await kept == "KEPT"
