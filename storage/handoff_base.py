"""The handoff store's contract: conversations handed to people, who holds them, and what
an agent says in them.

A transfer is written by the turn that makes it, in the statement that commits the turn
(:meth:`storage.base.ConversationStore.save` with a :class:`storage.base.TransferItem`), so
a conversation is in the queue exactly when its turn committed. Everything after that,
taking, replying, releasing and the queue timeout, changes the row with one conditional
statement in a transaction of its own, so two agents (on any instances) taking the same
conversation at once find one winner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from storage.base import HistoryEntry, OutboxItem

HandoffStatus = Literal["waiting", "active", "resolved", "abandoned"]
ReleaseMode = Literal["continue", "restart"]
OPEN_STATUSES: tuple[HandoffStatus, ...] = ("waiting", "active")
RELEASE_MODES: tuple[ReleaseMode, ...] = ("continue", "restart")


@dataclass(frozen=True, slots=True)
class Handoff:
    """One transfer of a conversation to a person, as stored."""

    id: int
    session_id: str
    bot_id: str
    channel: str
    conversation: str
    status: HandoffStatus
    attendant: str | None
    department: str | None
    priority: int
    reason: str | None
    context: str | None
    agent_id: str | None
    agent_name: str | None
    requested_at: datetime
    taken_at: datetime | None
    agent_active_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    release_mode: ReleaseMode | None
    # The user's latest message (lists only): what the agent sees before opening it.
    last_message: str | None = None
    last_message_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message to the user written with a handoff change: its history row and the outbox
    row that carries it to the conversation's channel."""

    entry: HistoryEntry
    outbox: OutboxItem


@dataclass(frozen=True, slots=True)
class Delivered:
    """A :class:`Delivery` once written: its history id and time, its outbox row."""

    history_id: int
    at: datetime
    outbox_id: int


# What a change of a handoff writes besides it (built from the changed row, inside the
# change's transaction): the generic webhook's event, a message to the user.
EventFor = Callable[[Handoff], OutboxItem | None]
DeliveryFor = Callable[[Handoff], Delivery | None]


@dataclass(frozen=True, slots=True)
class Change:
    """A handoff after a call that may change it: ``changed`` when this call changed it
    (else the open handoff as another caller left it), ``delivered`` its message."""

    handoff: Handoff
    changed: bool = True
    delivered: Delivered | None = None


class HandoffStore(Protocol):
    """Handoffs of every bot; every call is scoped by bot and session."""

    async def latest(self, session_id: str) -> Handoff | None:
        """The session's newest handoff, open or not; ``None`` when it never had one."""

    async def get(self, bot_id: str, session_id: str) -> Handoff | None:
        """The session's open handoff, else its newest one, if the session is ``bot_id``'s."""

    async def open(self, bot_id: str) -> list[Handoff]:
        """The bot's waiting and active handoffs with their last user message: waiting first,
        then by priority (highest first) and age (oldest first)."""

    async def queue_position(self, bot_id: str, priority: int) -> int:
        """Where a transfer of ``priority`` made now would stand among the waiting (1: first)."""

    async def take(
        self, bot_id: str, session_id: str, agent_id: str, agent_name: str, *, event: EventFor
    ) -> Change | None:
        """Give a waiting conversation to an agent: the changed handoff; when it was not
        waiting, its open handoff unchanged (held by this agent or another), or ``None``
        when it has none. Only one of agents taking it at once changes it."""

    async def say(
        self,
        bot_id: str,
        session_id: str,
        agent_id: str | None,
        delivery: DeliveryFor,
    ) -> Change | None:
        """Write the agent's message to the active handoff's conversation (``agent_id``
        ``None``: whoever holds it, for an admin), moving its last agent activity; its open
        handoff unchanged when another agent holds it or nobody does, ``None`` when none."""

    async def release(
        self,
        bot_id: str,
        session_id: str,
        agent_id: str | None,
        mode: ReleaseMode,
        *,
        event: EventFor,
        delivery: DeliveryFor,
    ) -> Change | None:
        """Hand the conversation back to the bot (``resolved``). Who may: the agent holding
        it, anyone (``agent_id`` ``None``) or any agent when it is still waiting; otherwise
        its open handoff unchanged. ``None`` when it has none open."""

    async def expire(
        self,
        bot_id: str,
        *,
        silence: float,
        mode: ReleaseMode,
        event: EventFor,
        delivery: DeliveryFor,
    ) -> Sequence[Change]:
        """Return to the bot (``abandoned``) every open handoff whose agent has been silent
        for ``silence`` seconds; each is returned by exactly one caller."""
