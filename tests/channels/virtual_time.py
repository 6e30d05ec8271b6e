"""An event loop whose clock jumps to the next timer instead of waiting for it.

Pacing and streaming tests run on it: minutes of provider time take
milliseconds, and every timestamp is exact, so assertions on intervals hold.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_TICK = 1e-6


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        # Nothing can happen before the next timer: jump to it. Every turn of the
        # loop also moves the clock a microsecond, as a real clock would, so code
        # that waits for float-rounded deadlines (aiolimiter) cannot spin in place.
        self._loop.now += max(timeout or 0.0, _TICK)
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector loop on virtual time, starting at 0."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
