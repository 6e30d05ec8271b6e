"""ConversationStore contract: one suite, every PostgreSQL backend (embedded, server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from storage.base import (
    ConversationStore,
    HistoryAttachment,
    HistoryEntry,
    Session,
    StorageError,
)
from storage.postgres import PostgresConversationStore


@pytest.fixture
async def store(pg_pool: asyncpg.Pool) -> AsyncIterator[ConversationStore]:
    opened = PostgresConversationStore(pg_pool)
    yield opened
    await opened.close()


@pytest.fixture
async def session(store: ConversationStore, unique: Callable[[str], str]) -> Session:
    return await store.create(bot_id=unique("bot"), channel="web", user_id=unique("user"))


def turn(n: int) -> list[HistoryEntry]:
    return [HistoryEntry("user", f"question {n}", 3), HistoryEntry("bot", f"answer {n}", 5)]


async def test_create_starts_an_active_empty_session(
    store: ConversationStore, unique: Callable[[str], str]
) -> None:
    bot, user = unique("bot"), unique("user")
    created = await store.create(bot_id=bot, channel="whatsapp", user_id=user)

    assert uuid.UUID(created.id)
    assert (created.bot_id, created.channel, created.user_id) == (bot, "whatsapp", user)
    assert created.status == "active"
    assert created.state == {}
    assert created.created_at is not None and created.updated_at is not None
    assert await store.get(created.id) == created


@pytest.mark.parametrize(
    "session_id", ["not-a-uuid", "", "1; DROP TABLE user_sessions", str(uuid.uuid4())]
)
async def test_unknown_or_malformed_ids_are_simply_absent(
    store: ConversationStore, session_id: str
) -> None:
    assert await store.get(session_id) is None
    assert await store.history(session_id) == []


async def test_save_persists_status_and_state(store: ConversationStore, session: Session) -> None:
    before = session.updated_at
    state = {
        "dialog": {"pc": 7, "vars": {"name": "Zoë", "n": 3.5, "ok": True, "none": None}},
        "suggestions": ["yes", "no"],
        "text": "emoji 🤖 and quotes \" ' \\",
    }
    session.state = state
    session.status = "waiting"
    await store.save(session)

    loaded = await store.get(session.id)
    assert loaded is not None
    assert loaded.state == state
    assert loaded.status == "waiting"
    assert before is not None and loaded.updated_at is not None
    assert loaded.updated_at > before
    assert session.updated_at == loaded.updated_at


async def test_history_is_oldest_first_and_keeps_only_the_last_limit(
    store: ConversationStore, session: Session
) -> None:
    for n in range(3):
        await store.save(session, append=turn(n))

    everything = await store.history(session.id)
    assert [e.content for e in everything] == [
        "question 0", "answer 0", "question 1", "answer 1", "question 2", "answer 2",
    ]  # fmt: skip
    assert [e.role for e in everything] == ["user", "bot"] * 3
    assert [e.tokens_used for e in everything] == [3, 5] * 3
    assert all(e.created_at is not None for e in everything)

    last = await store.history(session.id, limit=3)
    assert [e.content for e in last] == ["answer 1", "question 2", "answer 2"]
    assert await store.history(session.id, limit=0) == []


async def test_many_entries_in_one_save_keep_their_order(
    store: ConversationStore, session: Session
) -> None:
    entries = [HistoryEntry("user", f"m{i}") for i in range(120)]
    await store.save(session, append=entries)

    assert [e.content for e in await store.history(session.id, limit=500)] == [
        f"m{i}" for i in range(120)
    ]
    assert [e.content for e in await store.history(session.id)] == [f"m{i}" for i in range(70, 120)]


async def test_given_created_at_is_kept(store: ConversationStore, session: Session) -> None:
    at = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    await store.save(session, append=[HistoryEntry("system", "note", 0, at)])

    [entry] = await store.history(session.id)
    assert entry.seq is not None
    assert entry == HistoryEntry("system", "note", 0, at, entry.seq)


async def test_history_after_an_entry_is_what_came_later_oldest_first(
    store: ConversationStore, session: Session
) -> None:
    await store.save(session, append=[HistoryEntry("user", f"m{i}") for i in range(5)])
    every = await store.history(session.id)
    seqs = [e.seq for e in every]
    assert all(s is not None for s in seqs) and seqs == sorted(seqs)
    cursor = every[1].seq
    assert [e.content for e in await store.history(session.id, after=cursor)] == ["m2", "m3", "m4"]
    assert [e.content for e in await store.history(session.id, after=cursor, limit=2)] == [
        "m2",
        "m3",
    ]
    assert await store.history(session.id, after=every[-1].seq) == []


async def test_save_is_atomic_state_and_history_together(
    store: ConversationStore, session: Session
) -> None:
    await store.save(session, append=turn(0))
    session.state = {"step": "should not persist"}
    bad = [HistoryEntry("user", "fine"), HistoryEntry("x" * 500, "role too long for the column")]

    with pytest.raises(StorageError):
        await store.save(session, append=bad)

    loaded = await store.get(session.id)
    assert loaded is not None and loaded.state == {}
    assert [e.content for e in await store.history(session.id)] == ["question 0", "answer 0"]


async def test_saving_a_session_that_was_never_created_fails(
    store: ConversationStore, unique: Callable[[str], str]
) -> None:
    ghost = Session(id=str(uuid.uuid4()), bot_id=unique("bot"), channel="web", user_id="u")
    with pytest.raises(StorageError):
        await store.save(ghost, append=turn(0))
    assert await store.history(ghost.id) == []
    with pytest.raises(StorageError):
        await store.save(Session(id="nope", bot_id="b", channel="web", user_id="u"))


async def test_find_active_picks_the_most_recently_updated(
    store: ConversationStore, unique: Callable[[str], str]
) -> None:
    bot, user = unique("bot"), unique("user")
    older = await store.create(bot_id=bot, channel="web", user_id=user)
    newer = await store.create(bot_id=bot, channel="web", user_id=user)
    found = await store.find_active(bot_id=bot, channel="web", user_id=user)
    assert found is not None and found.id == newer.id

    await store.save(older, append=turn(1))  # touching it makes it the most recent
    found = await store.find_active(bot_id=bot, channel="web", user_id=user)
    assert found is not None and found.id == older.id


async def test_find_active_ignores_closed_sessions_and_other_scopes(
    store: ConversationStore, unique: Callable[[str], str]
) -> None:
    bot, user = unique("bot"), unique("user")
    active = await store.create(bot_id=bot, channel="web", user_id=user)
    closed = await store.create(bot_id=bot, channel="web", user_id=user)
    closed.status = "closed"
    await store.save(closed)
    await store.create(bot_id=unique("other-bot"), channel="web", user_id=user)
    await store.create(bot_id=bot, channel="telegram", user_id=user)
    await store.create(bot_id=bot, channel="web", user_id=unique("other-user"))

    found = await store.find_active(bot_id=bot, channel="web", user_id=user)
    assert found is not None and found.id == active.id
    assert await store.find_active(bot_id=bot, channel="sms", user_id=user) is None
    assert await store.find_active(bot_id=unique("nobody"), channel="web", user_id=user) is None


async def test_histories_of_concurrent_sessions_do_not_mix(
    store: ConversationStore, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    sessions = [
        await store.create(bot_id=bot, channel="web", user_id=f"user-{i}") for i in range(20)
    ]

    async def converse(s: Session) -> None:
        for n in range(5):
            s.state = {"turn": n}
            await store.save(s, append=[HistoryEntry("user", f"{s.user_id} {n}")])

    await asyncio.gather(*(converse(s) for s in sessions))

    for s in sessions:
        assert [e.content for e in await store.history(s.id)] == [
            f"{s.user_id} {n}" for n in range(5)
        ]
        loaded = await store.get(s.id)
        assert loaded is not None and loaded.state == {"turn": 4}


async def test_concurrent_calls_each_get_their_own_answer(
    store: ConversationStore, unique: Callable[[str], str]
) -> None:
    """Concurrent calls share statements; each caller still sees only its own result or error."""
    bot = unique("bot")
    users = [f"user-{i}" for i in range(40)]
    created = await asyncio.gather(
        *(store.create(bot_id=bot, channel="web", user_id=u) for u in users)
    )
    assert [s.user_id for s in created] == users
    assert len({s.id for s in created}) == len(users)

    found = await asyncio.gather(
        *(store.find_active(bot_id=bot, channel="web", user_id=u) for u in [*users, "nobody"])
    )
    assert [f.id if f else None for f in found] == [s.id for s in created] + [None]
    got = await asyncio.gather(*(store.get(s.id) for s in created), store.get(str(uuid.uuid4())))
    assert [g.id if g else None for g in got] == [s.id for s in created] + [None]

    ghost = Session(id=str(uuid.uuid4()), bot_id=bot, channel="web", user_id="ghost")
    for s in created:
        s.state = {"user": s.user_id}
    results = await asyncio.gather(
        *(store.save(s, append=[HistoryEntry("user", s.user_id)]) for s in created),
        store.save(ghost, append=[HistoryEntry("user", "lost")]),
        return_exceptions=True,
    )
    assert results[:-1] == [None] * len(created)
    assert isinstance(results[-1], StorageError)
    assert await store.history(ghost.id) == []
    for s in created:
        loaded = await store.get(s.id)
        assert loaded is not None and loaded.state == {"user": s.user_id}
        assert [e.content for e in await store.history(s.id)] == [s.user_id]


async def test_two_saves_of_one_session_at_once_both_land_in_order(
    store: ConversationStore, session: Session
) -> None:
    session.state = {"n": 1}
    one = store.save(session, append=[HistoryEntry("user", "one")])
    two = store.save(session, append=[HistoryEntry("user", "two")])
    await asyncio.gather(one, two)
    assert [e.content for e in await store.history(session.id)] == ["one", "two"]


async def test_a_new_session_is_written_by_its_first_save(
    store: ConversationStore, unique: Callable[[str], str]
) -> None:
    bot, user = unique("bot"), unique("user")
    fresh = store.new(bot_id=bot, channel="web", user_id=user)
    assert uuid.UUID(fresh.id) and not fresh.stored
    assert (fresh.status, fresh.state, fresh.created_at) == ("active", {}, None)
    assert await store.get(fresh.id) is None
    assert await store.find_active(bot_id=bot, channel="web", user_id=user) is None

    fresh.state = {"dialog": {"pc": 3}}
    await store.save(fresh, append=turn(0))

    assert fresh.stored and fresh.created_at is not None and fresh.updated_at is not None
    assert await store.get(fresh.id) == fresh
    found = await store.find_active(bot_id=bot, channel="web", user_id=user)
    assert found is not None and found.id == fresh.id and found.state == {"dialog": {"pc": 3}}
    assert [e.content for e in await store.history(fresh.id)] == ["question 0", "answer 0"]

    fresh.state = {"dialog": {"pc": 9}}
    await store.save(fresh, append=turn(1))  # now an update of the stored session
    loaded = await store.get(fresh.id)
    assert loaded is not None and loaded.state == {"dialog": {"pc": 9}}
    assert len(await store.history(fresh.id)) == 4


async def test_a_new_session_with_a_taken_id_is_refused(
    store: ConversationStore, session: Session
) -> None:
    impostor = Session(
        id=session.id, bot_id="other", channel="web", user_id="mallory", stored=False
    )
    impostor.state = {"stolen": True}
    with pytest.raises(StorageError):
        await store.save(impostor, append=[HistoryEntry("user", "let me in")])
    loaded = await store.get(session.id)
    assert loaded is not None and (loaded.user_id, loaded.state) == (session.user_id, {})
    assert await store.history(session.id) == []


async def test_new_and_stored_sessions_saved_at_once_each_land(
    store: ConversationStore, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    stored = [await store.create(bot_id=bot, channel="web", user_id=f"old-{i}") for i in range(5)]
    fresh = [store.new(bot_id=bot, channel="web", user_id=f"new-{i}") for i in range(5)]
    everyone = [*stored, *fresh]
    for s in everyone:
        s.state = {"user": s.user_id}
    await asyncio.gather(
        *(store.save(s, append=[HistoryEntry("user", s.user_id)]) for s in everyone)
    )
    for s in everyone:
        loaded = await store.get(s.id)
        assert loaded is not None and loaded.state == {"user": s.user_id}
        assert [e.content for e in await store.history(s.id)] == [s.user_id]


async def test_ids_follow_the_order_of_writes(
    store: ConversationStore, pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    # Time-ordered ids keep primary key inserts at the right edge of the index.
    bot = unique("bot")
    sessions = [await store.create(bot_id=bot, channel="web", user_id=f"u{n}") for n in range(5)]
    for n in range(3):
        for session in sessions:
            await store.save(session, append=turn(n))
    assert [s.id for s in sessions] == sorted(s.id for s in sessions)
    rows = await pg_pool.fetch(
        "SELECT h.id FROM message_history h JOIN user_sessions s ON s.id = h.session_id"
        " WHERE s.bot_id = $1 ORDER BY h.seq",
        bot,
    )
    ids = [str(r["id"]) for r in rows]
    assert len(ids) == 30
    assert ids == sorted(ids)


async def test_a_history_row_keeps_its_attachments(
    store: ConversationStore, session: Session
) -> None:
    photo = HistoryAttachment(
        kind="image",
        key="shop/users/u@telegram/inbox/17/0-photo.jpg",
        content_type="image/jpeg",
        size=48213,
        sha256="ab" * 32,
        filename="photo.jpg",
        caption="my receipt",
    )
    refused = HistoryAttachment(kind="video", key=None, content_type="video/mp4", error="too_large")
    note = HistoryAttachment(
        kind="audio",
        key="shop/users/u@telegram/inbox/17/2-voice.ogg",
        content_type="audio/ogg",
        size=5120,
        transcript="Call me at five, please.",
    )
    await store.save(
        session,
        append=[
            HistoryEntry("user", "my receipt", attachments=(photo, refused, note)),
            HistoryEntry("assistant", "Thanks!"),
        ],
    )
    user, bot = await store.history(session.id)
    assert user.attachments == (photo, refused, note)
    assert bot.attachments == ()
    [again] = await store.history(session.id, after=(user.seq or 0) - 1, limit=1)
    assert again.attachments == (photo, refused, note)
