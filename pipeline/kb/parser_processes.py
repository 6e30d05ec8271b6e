"""PDF and ``.docx`` parsing in worker processes, off the gateway's process.

pypdf and the docx reader run long stretches of Python that a thread of the gateway shares
with the event loop through the GIL: on a loaded machine a 400-page manual parsed in a
thread stalled the loop for over half a second at a time. These documents are parsed in a
small pool of processes instead (started from a fork server, lazily, on the first such
document, and shared by every ingestion and crawl of the process); lighter readers (text,
markdown, HTML, CSV) stay in the caller's thread executor.

Users' images are normalized there too (:mod:`pipeline.images`: pillow's encoder holds
the GIL). A document that kills its parser (a crash, the kernel's OOM killer) is unreadable, and the
pool is started afresh for the next one: one bad file never stops an ingestion.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import PurePosixPath
from typing import Any, TypeVar

from pipeline.kb.documents import UnreadableDocument

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The file kinds parsed in a worker process.
PROCESS_SUFFIXES = frozenset({".pdf", ".docx"})

# Imported by the fork server once, so that each worker starts with the parsers loaded.
_PRELOAD = ["pipeline.kb.readers", "pipeline.kb.web_pages", "pipeline.images"]


def parse_in_process(source: str) -> bool:
    """Whether the file named ``source`` is parsed in a worker process."""
    return PurePosixPath(source).suffix.lower() in PROCESS_SUFFIXES


class ParserProcesses:
    """A lazily started pool of parser processes; :meth:`run` calls a reader in one."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or min(2, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(_PRELOAD)
                self._pool = ProcessPoolExecutor(self._workers, mp_context=context)
            return self._pool

    def _submit(
        self, reader: Callable[..., T], args: tuple[Any, ...]
    ) -> tuple[ProcessPoolExecutor, Future[T]]:
        pool = self._executor()
        try:
            return pool, pool.submit(reader, *args)
        except BrokenProcessPool:  # broken by an earlier document: start afresh
            self._broken(pool)
            pool = self._executor()
            return pool, pool.submit(reader, *args)

    def _broken(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, source: str, reader: Callable[..., T], *args: Any) -> T:
        """``reader(*args)`` in a worker process; its exceptions come back as raised there.
        A worker that dies on it makes the document (named ``source``) unreadable."""
        loop = asyncio.get_running_loop()
        # Submitted from a thread: the first submit starts the fork server and a worker and
        # waits for them (~1 s with the parsers preloaded); a later one may start a worker.
        pool, future = await loop.run_in_executor(None, self._submit, reader, args)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._broken(pool)
            log.error("kb: the parser process died reading %s", source)
            raise UnreadableDocument(source, "its parser process died reading it") from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


#: The process's parser pool, shared by ingestion and the website crawler.
PARSERS = ParserProcesses()


async def read_off_loop(
    source: str,
    in_process: bool,
    executor: Executor | None,
    reader: Callable[..., T],
    *args: Any,
) -> T:
    """``reader(*args)`` away from the event loop: in :data:`PARSERS` when ``in_process``,
    else in ``executor`` (None: the loop's default)."""
    if in_process:
        return await PARSERS.run(source, reader, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, reader, *args)
