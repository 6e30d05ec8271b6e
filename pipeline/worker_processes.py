"""A lazily started pool of worker processes for CPU work that holds the GIL.

Parsing PDFs, normalizing images and decoding audio run long stretches of Python (or C
that keeps the GIL) which, in a thread of the gateway, stall its event loop. Each such
job runs in a small pool of processes started from a fork server on its first use, with
the modules it needs preloaded. A job that kills its worker (a crash, the kernel's OOM
killer) raises the error ``died`` makes for it, and the pool is started afresh for the
next one: one bad file never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerProcesses:
    """``await pool.run(what, fn, *args, **kwargs)``: ``fn`` in a worker process; its
    exceptions come back as raised there, a worker that dies on it raises ``died(what)``."""

    def __init__(
        self,
        name: str,
        preload: Sequence[str],
        died: Callable[[str], Exception],
        *,
        workers: int | None = None,
    ) -> None:
        self.name = name
        self._preload = list(preload)
        self._died = died
        self._workers = workers or min(2, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                # The process's one fork server takes the preload of the pool started first.
                context.set_forkserver_preload(self._preload)
                self._pool = ProcessPoolExecutor(self._workers, mp_context=context)
            return self._pool

    def _submit(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[ProcessPoolExecutor, Future[T]]:
        pool = self._executor()
        try:
            return pool, pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:  # broken by an earlier job: start afresh
            self._broken(pool)
            pool = self._executor()
            return pool, pool.submit(fn, *args, **kwargs)

    def _broken(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker; ``what`` names the job in the log."""
        loop = asyncio.get_running_loop()
        # Submitted from a thread: the first submit starts the fork server and a worker and
        # waits for them (~1 s with the modules preloaded); a later one may start a worker.
        pool, future = await loop.run_in_executor(None, self._submit, fn, args, kwargs)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._broken(pool)
            log.error("%s: the worker process died on %s", self.name, what)
            raise self._died(what) from None

    def close(self) -> None:
        """Stop the workers (they are started again on the next job)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
