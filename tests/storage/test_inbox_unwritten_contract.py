"""Turns written with their outcome: one suite, every PostgreSQL backend (embedded, server).

A turn started by :meth:`PostgresInbox.reserve` reads without writing; its save writes the
message (done, with its replies), the session and the history in one commit, and writes
nothing at all when the conversation changed since the read: another message became
active, the session was written, or the user's first session was created meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from storage.base import (
    ConversationChanged,
    HistoryEntry,
    InboxItem,
    InboxPut,
    OutboxItem,
    Session,
)
from storage.inbox import PostgresInbox
from storage.known_sessions import KnownSessions
from storage.postgres import PostgresConversationStore

CHANNEL = "web"


def item(bot: str, conversation: str, text: str = "hello") -> InboxItem:
    return InboxItem(
        bot_id=bot,
        channel=CHANNEL,
        external_id=uuid.uuid4().hex,
        conversation=conversation,
        received_at=datetime.now(UTC),
        message={"text": text},
    )


def reply(conversation: str, text: str) -> OutboxItem:
    return OutboxItem(
        channel=CHANNEL, conversation=conversation, message={"text": text}, delivered=True
    )


async def reserved(inbox: PostgresInbox, message: InboxItem, **kw: str) -> InboxPut:
    put = await inbox.reserve(message, **kw)
    assert put is not None and put.claim is not None and put.session is not None
    return put


async def test_a_reserved_turn_writes_its_message_done_with_its_session_and_replies(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    first = item(bot, "u1", "hi")
    put = await reserved(inbox, first)
    assert put.claim is not None and put.session is not None
    assert not put.claim.written and put.claim.seq == put.seq
    assert put.session.session is None  # the user has no session yet
    assert await inbox.status(bot, CHANNEL, first.external_id) is None  # nothing written

    session = conversations.new(bot_id=bot, channel=CHANNEL, user_id="u1")
    session.state = {"step": 1}
    await conversations.save(
        session,
        append=[HistoryEntry("user", "hi"), HistoryEntry("assistant", "hello!")],
        claim=put.claim,
        outbox=[reply("u1", "hello!")],
    )
    outcome = await inbox.outcome(bot, CHANNEL, first.external_id)
    assert outcome is not None
    assert (outcome.status, outcome.session_id, outcome.replies) == (
        "done",
        session.id,
        [{"text": "hello!"}],
    )
    assert [e.content for e in await conversations.history(session.id)] == ["hi", "hello!"]

    # The next message reads that session, with the version it was written at; by the
    # user, or by the id its message names.
    again = await reserved(inbox, item(bot, "u1", "Ada"))
    assert again.session is not None and again.session.session is not None
    read = again.session.session
    assert (read.id, read.state, read.version is not None) == (session.id, {"step": 1}, True)
    read.state = {"step": 2}
    assert again.claim is not None
    await conversations.save(read, append=[HistoryEntry("user", "Ada")], claim=again.claim)
    by_id = await reserved(inbox, item(bot, "u1", "name"), session_id=session.id.upper())
    assert by_id.session is not None and by_id.session.session is not None
    assert by_id.session.session.state == {"step": 2}
    assert by_id.session.session.version != read.version
    assert by_id.claim is not None and by_id.claim.seq > again.claim.seq


async def test_a_conversation_with_an_active_message_is_not_reserved(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    await inbox.put(item(bot, "u1"))
    assert await inbox.reserve(item(bot, "u1")) is None  # it must wait, written first
    assert await inbox.reserve(item(bot, "u2")) is not None
    assert await inbox.reserve(item(bot, "u3"), session_id="not-a-uuid") is None


async def test_nothing_is_written_when_a_message_became_active_since_the_read(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    late = item(bot, "u1")
    put = await reserved(inbox, late)
    other = await inbox.put_and_claim(item(bot, "u1", "meanwhile"), lease=30)
    assert other.claim is not None  # leased: the reserved turn was not in the inbox
    session = conversations.new(bot_id=bot, channel=CHANNEL, user_id="u1")
    assert put.claim is not None
    with pytest.raises(ConversationChanged):
        await conversations.save(session, append=[HistoryEntry("user", "hello")], claim=put.claim)
    assert await inbox.status(bot, CHANNEL, late.external_id) is None
    assert await conversations.get(session.id) is None


async def test_nothing_is_written_when_the_session_was_written_since_the_read(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    session = conversations.new(bot_id=bot, channel=CHANNEL, user_id="u1")
    session.state = {"step": 1}
    await conversations.save(session)
    stale = await reserved(inbox, item(bot, "u1", "stale"))
    fresh = await reserved(inbox, item(bot, "u1", "fresh"))
    assert stale.session is not None and fresh.session is not None
    assert stale.session.session is not None and fresh.session.session is not None
    fresh.session.session.state = {"step": "fresh"}
    assert fresh.claim is not None and stale.claim is not None
    await conversations.save(fresh.session.session, claim=fresh.claim)

    stale.session.session.state = {"step": "stale"}
    with pytest.raises(ConversationChanged):
        await conversations.save(
            stale.session.session, append=[HistoryEntry("user", "stale")], claim=stale.claim
        )
    found = await conversations.get(session.id)
    assert found is not None and found.state == {"step": "fresh"}
    assert await conversations.history(session.id) == []
    assert await inbox.status(bot, CHANNEL, stale.claim.external_id) is None


async def test_of_two_first_turns_of_a_user_one_is_written(
    pg_pool: asyncpg.Pool, inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    """Two turns of a user without a session, read at once and committed at once through
    two stores (two statements, as two instances would send): one creates the session, the
    other writes nothing."""
    bot = unique("bot")
    stores = [PostgresConversationStore(pg_pool) for _ in range(2)]
    try:
        puts = [await reserved(inbox, item(bot, "u1", f"m{n}")) for n in range(2)]

        async def commit(store: PostgresConversationStore, put: InboxPut) -> str:
            assert put.claim is not None
            session = store.new(bot_id=bot, channel=CHANNEL, user_id="u1")
            await store.save(session, append=[HistoryEntry("user", "hi")], claim=put.claim)
            return session.id

        results = await asyncio.gather(
            *(commit(store, put) for store, put in zip(stores, puts, strict=True)),
            return_exceptions=True,
        )
        written = [r for r in results if isinstance(r, str)]
        assert len(written) == 1, results
        assert sum(isinstance(r, ConversationChanged) for r in results) == 1
        active = await stores[0].find_active(bot_id=bot, channel=CHANNEL, user_id="u1")
        assert active is not None and active.id == written[0]
        statuses = [
            await inbox.status(bot, CHANNEL, put.claim.external_id)
            for put in puts
            if put.claim is not None
        ]
        assert sorted(statuses, key=str) == [None, "done"]
    finally:
        for store in stores:
            await store.close()


async def test_one_store_never_commits_two_turns_of_a_conversation_together(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    """Submitted together to one store (one batch, were they not kept apart), two first turns
    of a user still end with one session: the second is checked against the first."""
    bot = unique("bot")
    puts = [await reserved(inbox, item(bot, "u1", f"m{n}")) for n in range(2)]

    async def commit(put: InboxPut) -> str:
        assert put.claim is not None
        session = conversations.new(bot_id=bot, channel=CHANNEL, user_id="u1")
        await conversations.save(session, claim=put.claim)
        return session.id

    results = await asyncio.gather(*(commit(put) for put in puts), return_exceptions=True)
    assert sum(isinstance(r, str) for r in results) == 1, results
    assert sum(isinstance(r, ConversationChanged) for r in results) == 1


# -- sessions remembered by the instance that wrote them (storage.known_sessions) ----------


@pytest.fixture
async def remembering(
    pg_pool: asyncpg.Pool,
) -> AsyncIterator[tuple[PostgresInbox, PostgresConversationStore]]:
    """An instance's inbox and conversation store sharing what it remembers."""
    known = KnownSessions(100)
    opened = (PostgresInbox(pg_pool, known=known), PostgresConversationStore(pg_pool, known=known))
    yield opened
    for store in opened:
        await store.close()


async def first_turn(
    inbox: PostgresInbox, store: PostgresConversationStore, bot: str, user: str
) -> Session:
    put = await reserved(inbox, item(bot, user, "hi"))
    assert put.claim is not None
    session = store.new(bot_id=bot, channel=CHANNEL, user_id=user)
    session.state = {"step": 1}
    await store.save(session, append=[HistoryEntry("user", "hi")], claim=put.claim)
    return session


async def test_the_turn_after_one_committed_here_starts_without_a_read(
    remembering: tuple[PostgresInbox, PostgresConversationStore],
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox, store = remembering
    bot = unique("bot")
    session = await first_turn(inbox, store, bot, "u1")
    monkeypatch.setattr(inbox, "_reserves", None)  # a read would fail
    for step in (2, 3):
        put = await reserved(inbox, item(bot, "u1", f"step {step}"))
        assert put.claim is not None and put.session is not None
        read = put.session.session
        assert read is not None and (read.id, read.state) == (session.id, {"step": step - 1})
        read.state = {"step": step}
        await store.save(read, append=[HistoryEntry("user", f"step {step}")], claim=put.claim)
    found = await store.get(session.id)
    assert found is not None and found.state == {"step": 3}
    assert [e.content for e in await store.history(session.id)] == ["hi", "step 2", "step 3"]
    # By the id the message names, too; another id is read.
    by_id = await reserved(inbox, item(bot, "u1"), session_id=session.id)
    assert by_id.session is not None and by_id.session.session is not None
    with pytest.raises(AttributeError):  # the read, skipped above, is needed for another id
        await inbox.reserve(item(bot, "u1"), session_id=str(uuid.uuid4()))


async def test_a_session_written_by_another_instance_runs_the_remembered_turn_again(
    remembering: tuple[PostgresInbox, PostgresConversationStore],
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    here, store = remembering
    bot = unique("bot")
    session = await first_turn(here, store, bot, "u1")
    # Another instance (its own inbox and store, remembering nothing) runs a turn.
    elsewhere = await reserved(inbox, item(bot, "u1", "elsewhere"))
    assert elsewhere.session is not None and elsewhere.session.session is not None
    elsewhere.session.session.state = {"step": "elsewhere"}
    assert elsewhere.claim is not None
    await conversations.save(elsewhere.session.session, claim=elsewhere.claim)

    stale = await reserved(here, item(bot, "u1", "stale"))  # remembered: not read
    assert stale.session is not None and stale.session.session is not None
    assert stale.session.session.state == {"step": 1}
    assert stale.claim is not None
    with pytest.raises(ConversationChanged):
        await store.save(stale.session.session, claim=stale.claim)
    fresh = await reserved(here, item(bot, "u1", "fresh"))  # forgotten: read again
    assert fresh.session is not None and fresh.session.session is not None
    assert fresh.session.session.state == {"step": "elsewhere"}
    assert fresh.claim is not None
    await store.save(fresh.session.session, claim=fresh.claim)
    assert (await conversations.get(session.id)) is not None


async def test_a_message_written_to_the_inbox_makes_the_next_turn_read(
    remembering: tuple[PostgresInbox, PostgresConversationStore],
    unique: Callable[[str], str],
) -> None:
    inbox, store = remembering
    bot = unique("bot")
    await first_turn(inbox, store, bot, "u1")
    await inbox.put(item(bot, "u1", "queued"))  # pending: the next turn must wait for it
    assert await inbox.reserve(item(bot, "u1")) is None
    [claim] = await inbox.claim(limit=1, lease=30, bot_id=bot)
    session = await store.find_active(bot_id=bot, channel=CHANNEL, user_id="u1")
    assert session is not None
    await store.save(session, claim=claim)  # a written turn: its session is read next
    put = await reserved(inbox, item(bot, "u1"))
    assert put.session is not None and put.session.session is not None
    assert put.session.session.version != session.version
