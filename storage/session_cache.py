"""Sessions kept in the process that is their only writer.

With in-process locks the gateway is, by construction, a single instance:
every turn of every conversation runs in this process, one at a time per
conversation, and every session write goes through it. Reading a session
back from PostgreSQL at the start of each turn then only returns what this
process wrote at the end of the previous one. :class:`CachedConversationStore`
keeps those sessions (the most recently used ones, up to a bound) and serves
``get``/``find_active`` from memory; every write still goes to the store
before it returns (write-through), so a restart loses nothing.

Several instances share sessions only through Redis locks (``REDIS_URL``),
and then no process caches sessions: each turn reads its session.

The cache holds a session's state as the JSON bytes last saved and hands out
a fresh copy on every read, so a turn that fails half-way (its changes made
in memory, never saved) leaves the cached session as it was in the database.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from storage.base import ConversationStore, HistoryEntry, Session

DEFAULT_MAX_SESSIONS = 10_000

_Scope = tuple[str, str, str]  # (bot_id, channel, user_id)


@dataclass(slots=True)
class _Entry:
    bot_id: str
    channel: str
    user_id: str
    status: str
    state: bytes
    created_at: datetime | None
    updated_at: datetime | None

    def session(self, session_id: str) -> Session:
        return Session(
            id=session_id,
            bot_id=self.bot_id,
            channel=self.channel,
            user_id=self.user_id,
            status=self.status,
            state=orjson.loads(self.state),
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class CachedConversationStore:
    """:class:`storage.base.ConversationStore` over ``store``, with recent sessions in memory.

    Only for a process that is the sole writer of the sessions (see the module
    docstring). ``max_sessions`` bounds the memory: the least recently used
    sessions are dropped first and read from ``store`` when needed again.
    """

    def __init__(self, store: ConversationStore, *, max_sessions: int = DEFAULT_MAX_SESSIONS):
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._store = store
        self._max = max_sessions
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # The active session find_active answers for a scope, when it is cached.
        self._active: dict[_Scope, str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def create(self, *, bot_id: str, channel: str, user_id: str) -> Session:
        session = await self._store.create(bot_id=bot_id, channel=channel, user_id=user_id)
        self._remember(session, orjson.dumps(session.state), latest=True)
        return session

    def new(self, *, bot_id: str, channel: str, user_id: str) -> Session:
        return self._store.new(bot_id=bot_id, channel=channel, user_id=user_id)

    async def get(self, session_id: str) -> Session | None:
        entry = self._entries.get(session_id)
        if entry is not None:
            self._entries.move_to_end(session_id)
            return entry.session(session_id)
        session = await self._store.get(session_id)
        if session is not None:
            self._remember(session, orjson.dumps(session.state))
        return session

    async def find_active(self, *, bot_id: str, channel: str, user_id: str) -> Session | None:
        session_id = self._active.get((bot_id, channel, user_id))
        if session_id is not None:
            return await self.get(session_id)
        session = await self._store.find_active(bot_id=bot_id, channel=channel, user_id=user_id)
        if session is not None:
            self._remember(session, orjson.dumps(session.state), latest=True)
        return session

    async def save(self, session: Session, *, append: Sequence[HistoryEntry] = ()) -> None:
        state = orjson.dumps(session.state)
        try:
            await self._store.save(session, append=append)
        except BaseException:
            self._forget(session.id)  # whatever happened, the next read asks the store
            raise
        self._remember(session, state, latest=True)

    async def history(self, session_id: str, *, limit: int = 50) -> list[HistoryEntry]:
        return await self._store.history(session_id, limit=limit)

    async def close(self) -> None:
        self._entries.clear()
        self._active.clear()
        await self._store.close()

    def _remember(self, session: Session, state: bytes, *, latest: bool = False) -> None:
        """Cache ``session``; ``latest``: it is its scope's most recently updated session
        (just created, saved, or found as such by the store)."""
        scope = (session.bot_id, session.channel, session.user_id)
        self._entries[session.id] = _Entry(
            *scope, session.status, state, session.created_at, session.updated_at
        )
        self._entries.move_to_end(session.id)
        if latest and session.status == "active":
            self._active[scope] = session.id
        elif self._active.get(scope) == session.id and session.status != "active":
            del self._active[scope]
        while len(self._entries) > self._max:
            self._forget(next(iter(self._entries)))

    def _forget(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is None:
            return
        scope = (entry.bot_id, entry.channel, entry.user_id)
        if self._active.get(scope) == session_id:
            del self._active[scope]
