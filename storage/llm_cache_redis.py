""":class:`storage.llm_cache_base.AnswerStore` in Redis, shared by every gateway instance.

Keys, under the deployment's prefix (``botserver:`` by default)::

    llmcache:<bot>:kb                  the bot's knowledge-base version (INCR)
    llmcache:<bot>:<scope>:x:<key>     an exact entry (a JSON string, PX = its ttl)
    llmcache:<bot>:<scope>:s           the scope's similarity entries: a list, newest
                                       first, trimmed to max_similar, PX = the newest's ttl

A similarity entry is one binary record (its deadline, its float32 vector, its entry as
JSON), so a lookup is one ``LRANGE`` and one matrix-vector product here; records past
their own deadline are skipped. Redis has no vector search of its own without modules,
and a scan of at most ``max_similar`` vectors needs none.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import orjson
import redis.asyncio as aioredis

from storage.llm_cache_base import CachedAnswer, SimilarAnswer
from storage.redis import DEFAULT_PREFIX, _translate

_HEAD = struct.Struct("<dI")  # deadline (Unix seconds), dimension


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _entry_json(entry: CachedAnswer) -> bytes:
    return orjson.dumps({"q": entry.question, "a": entry.answer, "t": entry.created})


def _entry(data: Any) -> CachedAnswer:
    return CachedAnswer(question=str(data["q"]), answer=str(data["a"]), created=float(data["t"]))


class RedisAnswers:
    """Cached answers in Redis (``REDIS_URL`` set)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix + "llmcache:"

    def _scope(self, bot: str, scope: str) -> str:
        return f"{self._prefix}{bot}:{scope}"

    async def kb_version(self, bot: str) -> int:
        with _translate:
            value = await self._client.get(f"{self._prefix}{bot}:kb")
        return int(value) if value is not None else 0

    async def bump_kb_version(self, bot: str) -> int:
        with _translate:
            return int(await self._client.incr(f"{self._prefix}{bot}:kb"))

    async def get(self, bot: str, scope: str, key: str) -> CachedAnswer | None:
        with _translate:
            value = await self._client.get(f"{self._scope(bot, scope)}:x:{key}")
        if value is None:
            return None
        return _entry(orjson.loads(value))

    async def similar(
        self, bot: str, scope: str, vector: Sequence[float], *, threshold: float, limit: int
    ) -> list[SimilarAnswer]:
        with _translate:
            found = await self._client.lrange(f"{self._scope(bot, scope)}:s", 0, -1)
        records = cast(list[bytes], found)  # the client does not decode responses
        query = np.asarray(vector, dtype=np.float32)
        dim = query.shape[0]
        now = time.time()
        rows: list[bytes] = []
        payloads: list[bytes] = []
        for record in records:
            deadline, size = _HEAD.unpack_from(record)
            if deadline <= now or size != dim:
                continue
            end = _HEAD.size + 4 * size
            rows.append(record[_HEAD.size : end])
            payloads.append(record[end:])
        if not rows:
            return []
        matrix = np.frombuffer(b"".join(rows), dtype=np.float32).reshape(len(rows), dim)
        scores = matrix @ query
        best = np.argsort(-scores, kind="stable")[:limit]  # stable: the newest of equals first
        return [
            SimilarAnswer(float(scores[i]), _entry(orjson.loads(payloads[i])))
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
        name = self._scope(bot, scope)
        payload = _entry_json(entry)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(f"{name}:x:{key}", payload, px=_ms(ttl))
            if vector is not None and max_similar > 0:
                row = np.asarray(vector, dtype=np.float32)
                record = _HEAD.pack(time.time() + ttl, row.shape[0]) + row.tobytes() + payload
                pipe.lpush(f"{name}:s", record)
                pipe.ltrim(f"{name}:s", 0, max_similar - 1)
                pipe.pexpire(f"{name}:s", _ms(ttl))
            with _translate:
                await pipe.execute()
