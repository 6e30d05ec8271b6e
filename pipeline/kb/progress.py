"""A terminal progress bar for ``botserver kb ingest``: one line, redrawn per file."""

from __future__ import annotations

from typing import TextIO

from pipeline.kb.ingest import IngestProgress


class ProgressBar:
    """An ingestion progress callback that draws ``[####......] 12/40 faq/a.md indexed``."""

    def __init__(self, out: TextIO, *, width: int = 30) -> None:
        self._out = out
        self._width = width
        self._tty = out.isatty()

    def __call__(self, step: IngestProgress) -> None:
        filled = self._width * step.done // max(step.total, 1)
        bar = "#" * filled + "." * (self._width - filled)
        line = f"[{bar}] {step.done}/{step.total} {step.collection}/{step.source} {step.outcome}"
        if self._tty:  # redraw in place; a log file gets one line per file
            self._out.write("\r\x1b[2K" + line + ("\n" if step.done == step.total else ""))
        else:
            self._out.write(line + "\n")
        self._out.flush()
