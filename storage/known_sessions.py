"""Sessions this instance wrote last, remembered for the next turn of their conversation.

A turn written with its outcome (:meth:`storage.base.Inbox.reserve`) starts from a read
of its session and of whether its conversation has a message in flight. When the last
thing that happened to the conversation was such a turn's commit on this instance, that
read would find exactly what the commit wrote: the session is taken from here instead,
with the version (xmin) the commit returned, and the turn needs one round trip, its
commit, instead of two. The commit checks what the read would have, as it always does:
a message of the conversation in flight, or a session another instance wrote meanwhile,
makes it fail, nothing is written, and the message runs again, written first. So
remembering costs nothing where this instance is the only one writing its users'
sessions (the embedded database), or where a load balancer keeps each user on one
instance; elsewhere it costs such reruns (a dialog's calls to other services made
twice), and is off by default with a database server (``BOTSERVER_KNOWN_SESSIONS``).

Everything else this instance does to a conversation forgets it here: a message of it
written to the inbox (it may be in flight), a session saved another way, a commit that
found the conversation changed. The state is kept as JSON bytes, so that every turn gets
a copy of its own, and a turn that fails leaves nothing of its changes behind.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import orjson

from storage.base import Session

Conversation = tuple[str, str, str]  # (bot, channel, conversation): a session's user


@dataclass(frozen=True, slots=True)
class _Known:
    id: str
    status: str
    state: bytes
    created_at: datetime | None
    updated_at: datetime | None
    version: int


class KnownSessions:
    """The last session committed here of up to ``size`` conversations, the least recently
    used forgotten first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._known: OrderedDict[Conversation, _Known] = OrderedDict()

    def get(self, conversation: Conversation) -> Session | None:
        """A copy of the conversation's session as this instance last wrote it, if known."""
        known = self._known.get(conversation)
        if known is None:
            return None
        self._known.move_to_end(conversation)
        bot_id, channel, user_id = conversation
        return Session(
            id=known.id,
            bot_id=bot_id,
            channel=channel,
            user_id=user_id,
            status=known.status,
            state=orjson.loads(known.state),
            created_at=known.created_at,
            updated_at=known.updated_at,
            version=known.version,
        )

    def remember(self, session: Session, version: int) -> None:
        """``session`` was just committed here, its row now at ``version``. A session no
        longer active is forgotten: the user's next message does not continue it."""
        conversation = (session.bot_id, session.channel, session.user_id)
        if session.status != "active":
            self._known.pop(conversation, None)
            return
        self._known[conversation] = _Known(
            session.id,
            session.status,
            orjson.dumps(session.state),
            session.created_at,
            session.updated_at,
            version,
        )
        self._known.move_to_end(conversation)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def forget(self, conversation: Conversation) -> None:
        self._known.pop(conversation, None)

    def __len__(self) -> int:
        return len(self._known)
