"""What the stages may use of the world, injected by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from storage.base import ConversationStore, Locks


@dataclass(frozen=True, slots=True)
class Services:
    """The stores and providers a turn can reach."""

    conversations: ConversationStore
    locks: Locks
