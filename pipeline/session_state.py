"""The conversation state of a session, typed and versioned.

``storage.base.Session.state`` stays plain JSON, because that is what the stores keep; this
module is the one place that knows its layout.  Code of the pipeline reads the state with
:func:`read_state` and changes it with :func:`write_state`, which converts at that edge: the
JSON is read into a :class:`SessionState` and the whole dataclass written back, so a key is
never spelled anywhere else.  The layout (``version`` 1)::

    {"version": 1,
     "started": true,                     the start dialog ran in this session
     "dialog": {...} | null,              the interpreter's saved state (basic.interpreter)
     "suggestions": [[key, label], ...],  ADD SUGGESTION / HEAR AS "A", "B"
     "system_prompt": "..." | null,       BEGIN SYSTEM PROMPT
     "context": {"name": "text"},         SET CONTEXT
     "tools": ["get-price"],              USE TOOL / ADD TOOL
     "knowledge_bases": ["products"],     USE KB: the collections searched
     "websites": [{"url", "refresh"}],    USE WEBSITE: sites crawled into the bot's knowledge
                                          base, their collections searched too
     "pending_tool": {...} | null}        a tool the model called that waits on HEAR
                                          (pipeline.tool_loop.PendingTool)
     "needs_human": false}                TRANSFER TO HUMAN handed the conversation to a
                                          person (General Bots' name): its handoff
                                          (storage.handoffs) says whether one still has it

State saved before versions existed (no ``version`` key) reads as version 1: its keys are
the same.  A state of a newer version than this code knows is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.kb.web_urls import website_collection
from storage.base import Session

SESSION_STATE_VERSION = 1


class SessionStateError(ValueError):
    """The session's state was written by a newer version, or is not a state at all."""


@dataclass(frozen=True, slots=True)
class Website:
    """A website the conversation searches, named by ``USE WEBSITE url [REFRESH every]``
    (``url`` normalized; ``refresh`` as the dialog wrote it, ``""`` for the bot's default)."""

    url: str
    refresh: str = ""

    @property
    def collection(self) -> str:
        """The knowledge-base collection its pages are indexed in."""
        return website_collection(self.url)


@dataclass(slots=True)
class SessionState:
    """Everything a conversation remembers between turns, apart from its history."""

    started: bool = False
    dialog: dict[str, Any] | None = None
    suggestions: list[tuple[str, str]] = field(default_factory=list)
    system_prompt: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    tools: list[str] = field(default_factory=list)
    knowledge_bases: list[str] = field(default_factory=list)
    websites: list[Website] = field(default_factory=list)
    # A tool the model called that waits at HEAR: the next message resumes it, and its
    # result goes back to the model (the layout is pipeline.tool_loop's to read and write).
    pending_tool: dict[str, Any] | None = None
    # The conversation was transferred to a person: while its handoff is open the bot stays
    # silent; the first message after the release clears it (see pipeline.handoff_stage).
    needs_human: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SessionState:
        if not data:
            return cls()
        version = data.get("version", SESSION_STATE_VERSION)
        if version != SESSION_STATE_VERSION:
            raise SessionStateError(
                f"session state version {version!r}; this version reads {SESSION_STATE_VERSION}"
            )
        dialog = data.get("dialog")
        pending_tool = data.get("pending_tool")
        return cls(
            started=bool(data.get("started", False)),
            dialog=dict(dialog) if isinstance(dialog, Mapping) else None,
            suggestions=[(str(k), str(label)) for k, label in data.get("suggestions") or ()],
            system_prompt=data.get("system_prompt"),
            context={str(k): str(v) for k, v in (data.get("context") or {}).items()},
            tools=[str(t) for t in data.get("tools") or ()],
            knowledge_bases=[str(k) for k in data.get("knowledge_bases") or ()],
            websites=[
                Website(str(w["url"]), str(w.get("refresh") or ""))
                for w in data.get("websites") or ()
            ],
            pending_tool=dict(pending_tool) if isinstance(pending_tool, Mapping) else None,
            needs_human=bool(data.get("needs_human", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SESSION_STATE_VERSION,
            "started": self.started,
            "dialog": self.dialog,
            "suggestions": [[k, label] for k, label in self.suggestions],
            "system_prompt": self.system_prompt,
            "context": dict(self.context),
            "tools": list(self.tools),
            "knowledge_bases": list(self.knowledge_bases),
            "websites": [{"url": w.url, "refresh": w.refresh} for w in self.websites],
            "pending_tool": self.pending_tool,
            "needs_human": self.needs_human,
        }

    # -- changes keywords make

    def add_suggestion(self, key: str, label: str) -> None:
        self.suggestions = [s for s in self.suggestions if s[0] != key]
        self.suggestions.append((key, label))

    def searched_collections(self) -> tuple[str, ...]:
        """The collections a question searches: ``USE KB``'s, then ``USE WEBSITE``'s (none:
        the knowledge base decides, and searches all of the bot's)."""
        names = list(self.knowledge_bases)
        for website in self.websites:
            self.add_unique(names, website.collection)
        return tuple(names)

    def add_unique(self, items: list[str], name: str) -> None:
        if name not in items:
            items.append(name)


def read_state(session: Session) -> SessionState:
    """The session's state as a dataclass (a copy: change it, then :func:`write_state`)."""
    return SessionState.from_json(session.state)


def write_state(session: Session, state: SessionState) -> None:
    """Store ``state`` into the session's JSON (in place: whoever holds the dict sees it)."""
    data = session.state
    data.clear()
    data.update(state.to_json())
