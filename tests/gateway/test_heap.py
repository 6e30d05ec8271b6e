"""The serving process's garbage-collector settings (gateway/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from aiohttp import web

from gateway.heap import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restore_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def test_startup_freezes_what_lives_now_and_collects_young_objects_less_often(
    restore_collector: None,
) -> None:
    long_lived = [{"program": n} for n in range(1000)]
    await settle_heap(web.Application())

    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_freeze_count() >= len(long_lived)
    collected = {id(o) for o in gc.get_objects(2)}  # frozen objects are in no generation
    assert not any(id(o) in collected for o in long_lived)
