"""PDF and ``.docx`` parsing in worker processes, off the gateway's process.

pypdf and the docx reader run long stretches of Python that a thread of the gateway shares
with the event loop through the GIL: on a loaded machine a 400-page manual parsed in a
thread stalled the loop for over half a second at a time. These documents are parsed in a
small pool of processes instead (started from a fork server, lazily, on the first such
document, and shared by every ingestion and crawl of the process); lighter readers (text,
markdown, HTML, CSV) stay in the caller's thread executor.

Users' images are normalized there too (:mod:`pipeline.images`: pillow's encoder holds
the GIL). A document that kills its parser is unreadable, and the pool is started afresh
for the next one (:mod:`pipeline.worker_processes`): one bad file never stops an
ingestion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import PurePosixPath
from typing import Any, TypeVar

from pipeline.kb.documents import UnreadableDocument
from pipeline.worker_processes import WorkerProcesses

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The file kinds parsed in a worker process.
PROCESS_SUFFIXES = frozenset({".pdf", ".docx"})

# Imported by the fork server once, so that each worker starts with the parsers loaded.
_PRELOAD = ["pipeline.kb.readers", "pipeline.kb.web_pages", "pipeline.images"]


def parse_in_process(source: str) -> bool:
    """Whether the file named ``source`` is parsed in a worker process."""
    return PurePosixPath(source).suffix.lower() in PROCESS_SUFFIXES


class ParserProcesses(WorkerProcesses):
    """A pool of parser processes; ``run(source, reader, *args)`` calls a reader in one."""

    def __init__(self, workers: int | None = None) -> None:
        super().__init__("kb", _PRELOAD, _died, workers=workers)


def _died(source: str) -> UnreadableDocument:
    return UnreadableDocument(source, "its parser process died reading it")


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
