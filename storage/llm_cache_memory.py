""":class:`storage.llm_cache_base.AnswerStore` in this process: dicts and numpy matrices.

Each scope's vectors are one float32 matrix, scanned with one matrix-vector product (a
scope holds at most ``max_similar`` rows, 100 by default: a scan is a few microseconds).
The whole store is bounded too, by ``max_entries`` exact entries and as many vectors: the
oldest go first, so a process serving many scopes (many system prompts, many contexts)
does not grow without end.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from storage.llm_cache_base import CachedAnswer, SimilarAnswer

DEFAULT_MAX_ENTRIES = 50_000


@dataclass(slots=True)
class _Table:
    """One scope's similarity entries, oldest first."""

    vectors: npt.NDArray[np.float32]
    deadlines: npt.NDArray[np.float64]
    entries: list[CachedAnswer] = field(default_factory=list)

    def live(self, now: float) -> None:
        keep = self.deadlines > now
        if not keep.all():
            self.vectors = self.vectors[keep]
            self.deadlines = self.deadlines[keep]
            self.entries = [e for e, k in zip(self.entries, keep, strict=True) if k]


class MemoryAnswers:
    """Cached answers in this process (the default when no Redis is configured)."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._max = max_entries
        self._versions: dict[str, int] = {}
        self._exact: OrderedDict[tuple[str, str, str], tuple[float, CachedAnswer]] = OrderedDict()
        self._tables: OrderedDict[tuple[str, str], _Table] = OrderedDict()
        self._rows = 0  # vectors in every table

    async def kb_version(self, bot: str) -> int:
        return self._versions.get(bot, 0)

    async def bump_kb_version(self, bot: str) -> int:
        self._versions[bot] = self._versions.get(bot, 0) + 1
        return self._versions[bot]

    async def get(self, bot: str, scope: str, key: str) -> CachedAnswer | None:
        found = self._exact.get((bot, scope, key))
        if found is None:
            return None
        deadline, entry = found
        if deadline <= time.monotonic():
            del self._exact[(bot, scope, key)]
            return None
        return entry

    async def similar(
        self, bot: str, scope: str, vector: Sequence[float], *, threshold: float, limit: int
    ) -> list[SimilarAnswer]:
        table = self._tables.get((bot, scope))
        query = np.asarray(vector, dtype=np.float32)
        if table is None or table.vectors.shape[1] != query.shape[0]:
            return []
        before = len(table.entries)
        table.live(time.monotonic())
        self._rows -= before - len(table.entries)
        if not table.entries:
            return []
        scores = table.vectors @ query
        best = np.argsort(-scores)[:limit]
        return [
            SimilarAnswer(float(scores[i]), table.entries[i])
            for i in best
            if scores[i] >= threshold
        ]

    async def put(
        self,
        bot: str,
        scope: str,
        key: str,
        entry: CachedAnswer,
        *,
        vector: Sequence[float] | None,
        ttl: float,
        max_similar: int,
    ) -> None:
        now = time.monotonic()
        deadline = now + ttl
        exact = (bot, scope, key)
        self._exact.pop(exact, None)
        self._exact[exact] = (deadline, entry)
        while len(self._exact) > self._max:
            self._exact.popitem(last=False)
        if vector is None or max_similar <= 0:
            return
        row = np.asarray(vector, dtype=np.float32)[None, :]
        table = self._tables.pop((bot, scope), None)  # back in last: the newest scope
        if table is None or table.vectors.shape[1] != row.shape[1]:
            self._rows -= len(table.entries) if table is not None else 0
            table = _Table(np.empty((0, row.shape[1]), np.float32), np.empty(0, np.float64))
        before = len(table.entries)
        table.live(now)
        table.vectors = np.vstack([table.vectors, row])[-max_similar:]
        table.deadlines = np.append(table.deadlines, deadline)[-max_similar:]
        table.entries = [*table.entries, entry][-max_similar:]
        self._rows += len(table.entries) - before
        self._tables[(bot, scope)] = table
        while self._rows > self._max and self._tables:
            _, oldest = self._tables.popitem(last=False)
            self._rows -= len(oldest.entries)
