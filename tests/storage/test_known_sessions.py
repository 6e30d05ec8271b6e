"""The sessions an instance wrote last: copies for each turn, the least recently used
forgotten first, a session no longer active not remembered."""

from __future__ import annotations

import pytest

from storage.base import Session
from storage.known_sessions import KnownSessions


def session(user: str, **kw: object) -> Session:
    return Session(id=f"id-{user}", bot_id="b", channel="web", user_id=user, **kw)  # type: ignore[arg-type]


def test_each_turn_gets_a_copy_of_its_own() -> None:
    known = KnownSessions(10)
    known.remember(session("u1", state={"dialog": {"pc": 3}}), version=41)
    first = known.get(("b", "web", "u1"))
    assert first is not None and (first.id, first.version) == ("id-u1", 41)
    first.state["dialog"]["pc"] = 99  # a turn that changes it, then fails
    again = known.get(("b", "web", "u1"))
    assert again is not None and again.state == {"dialog": {"pc": 3}}
    assert known.get(("b", "web", "u2")) is None


def test_the_least_recently_used_are_forgotten_first() -> None:
    known = KnownSessions(2)
    known.remember(session("u1"), version=1)
    known.remember(session("u2"), version=2)
    assert known.get(("b", "web", "u1")) is not None  # u1 used: u2 is now the oldest
    known.remember(session("u3"), version=3)
    assert known.get(("b", "web", "u2")) is None
    assert known.get(("b", "web", "u1")) is not None and len(known) == 2


def test_a_session_no_longer_active_or_forgotten_is_not_remembered() -> None:
    known = KnownSessions(10)
    known.remember(session("u1"), version=1)
    known.remember(session("u1", status="closed"), version=2)
    assert known.get(("b", "web", "u1")) is None
    known.remember(session("u2"), version=1)
    known.forget(("b", "web", "u2"))
    assert known.get(("b", "web", "u2")) is None
    with pytest.raises(ValueError):
        KnownSessions(0)
