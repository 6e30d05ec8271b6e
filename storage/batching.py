"""Micro-batching: many concurrent callers, one round trip.

Each turn reads its session and saves it with its history. Sent one by one,
every statement costs a round trip (and a commit) of its own; under load the
round trips, not the SQL, dominate. A :class:`Batcher` gathers the calls that
arrive while earlier ones are in flight and runs them as one statement; when
idle a call goes out on the next loop iteration, so batching adds no delay.
This is the group commit of databases, done before the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Runs one batch: one result (or exception, for that item alone) per item, in order.
RunBatch = Callable[[Sequence[Item]], Awaitable[Sequence[Result | BaseException]]]


class Batcher(Generic[Item, Result]):
    """Collects items from concurrent callers and runs them in batches.

    At most ``max_in_flight`` batches run at once (size it to the connection
    pool); each takes up to ``max_batch`` waiting items. Items with the same
    ``key`` never share a batch, nor run in two batches at once: they run one
    after the other in the order submitted, so two writes to one row land in
    that order. A failure of the whole batch is raised to every caller in it.
    """

    def __init__(
        self,
        run: RunBatch[Item, Result],
        *,
        key: Callable[[Item], Hashable] | None = None,
        max_batch: int = 256,
        max_in_flight: int = 4,
    ) -> None:
        self._run = run
        self._key = key
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._running_keys: set[Hashable] = set()  # keys of the items in running batches

    async def submit(self, item: Item) -> Result:
        """Run ``item`` in the next batch and return its result (or raise its error)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if self._scheduled or not self._pending or self._in_flight >= self._max_in_flight:
            return
        self._scheduled = True
        # The batch's task first runs on the next loop iteration: callers that
        # are ready in this one join it. It then sends its statement in that
        # same step, rather than one more iteration later.
        task = asyncio.get_running_loop().create_task(self._run_next_batch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_next_batch(self) -> None:
        self._scheduled = False
        batch, keys = self._take()
        if not batch:
            return
        self._in_flight += 1
        self._running_keys |= keys
        self._schedule()  # more waiting: another batch may go out while this one runs
        await self._flush(batch, keys)

    def _take(self) -> tuple[list[tuple[Item, asyncio.Future[Result]]], set[Hashable]]:
        if self._key is None:
            taken = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            return taken, set()
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        rest: list[tuple[Item, asyncio.Future[Result]]] = []
        keys: set[Hashable] = set()
        # A key seen once, taken or left, closes the door to its later items:
        # they wait for the next batch, keeping their order.
        blocked = set(self._running_keys)
        for entry in self._pending:
            key = self._key(entry[0])
            if len(batch) < self._max_batch and key not in blocked:
                keys.add(key)
                batch.append(entry)
            else:
                rest.append(entry)
            blocked.add(key)
        self._pending = rest
        return batch, keys

    async def _flush(
        self, batch: list[tuple[Item, asyncio.Future[Result]]], keys: set[Hashable]
    ) -> None:
        live = [(item, future) for item, future in batch if not future.cancelled()]
        try:
            if live:
                results = await self._run([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch of {len(live)} gave {len(results)} results")
                for (_, future), result in zip(live, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        except asyncio.CancelledError:
            for _, future in live:
                future.cancel()
            raise
        except Exception as e:  # the whole batch failed: each caller gets the error
            for _, future in live:
                if not future.done():
                    future.set_exception(e)
        finally:
            self._in_flight -= 1
            self._running_keys -= keys
            self._schedule()
