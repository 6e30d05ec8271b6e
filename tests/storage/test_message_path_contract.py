"""Inbox and outbox contract: one suite, every PostgreSQL backend (embedded, server).

The inbox claims each message once, in order per conversation; a turn's commit
(session, history, outbox, claim done) is all or nothing; the outbox never
hands out a part again once the provider confirmed it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from storage.base import ClaimLost, HistoryEntry, InboxItem, OutboxItem, OutboxRow
from storage.inbox import PostgresInbox
from storage.outbox import PostgresConversationWindows, PostgresOutbox
from storage.postgres import PostgresConversationStore


@pytest.fixture
def outbox(pg_pool: asyncpg.Pool) -> PostgresOutbox:
    return PostgresOutbox(pg_pool)


def item(bot: str, conversation: str, external_id: str, **kw: object) -> InboxItem:
    return InboxItem(
        bot_id=bot,
        channel="telegram",
        external_id=external_id,
        conversation=conversation,
        received_at=datetime.now(UTC),
        message={"text": f"message {external_id}"},
        **kw,  # type: ignore[arg-type]
    )


async def test_a_message_is_claimed_once_however_often_it_is_put(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    seqs = await asyncio.gather(*(inbox.put(item(bot, "c1", "m1")) for _ in range(5)))
    assert sum(seq is not None for seq in seqs) == 1
    assert await inbox.put(item(bot, "c1", "m1")) is None

    first = await inbox.claim(limit=10, lease=30, bot_id=bot)
    assert [c.external_id for c in first] == ["m1"]
    assert first[0].message == {"text": "message m1"} and first[0].attempts == 1
    assert await inbox.claim(limit=10, lease=30, bot_id=bot) == []
    assert await inbox.status(bot, "telegram", "m1") == "running"


async def test_only_the_oldest_active_message_of_a_conversation_is_claimable(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    for conversation, external_id in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")]:
        await inbox.put(item(bot, conversation, external_id))

    claimed = await inbox.claim(limit=10, lease=30, bot_id=bot)
    assert [c.external_id for c in claimed] == ["a1", "b1"]
    await inbox.finish(claimed[0], status="done")
    # a2 is now the oldest of conversation a; b2 waits for b1, still running.
    assert [c.external_id for c in await inbox.claim(limit=10, lease=30, bot_id=bot)] == ["a2"]


async def test_concurrent_claims_never_share_a_message_nor_a_conversation(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    for n in range(40):
        await inbox.put(item(bot, f"c{n % 10}", f"m{n}"))
    batches = await asyncio.gather(*(inbox.claim(limit=4, lease=30, bot_id=bot) for _ in range(8)))
    claimed = [c for batch in batches for c in batch]
    assert len({c.seq for c in claimed}) == len(claimed)
    assert len({c.conversation for c in claimed}) == len(claimed) == 10
    assert {c.external_id for c in claimed} == {f"m{n}" for n in range(10)}


async def test_a_retried_message_waits_and_keeps_its_conversation_waiting(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    await inbox.put(item(bot, "c", "m1"))
    await inbox.put(item(bot, "c", "m2"))
    [claim] = await inbox.claim(limit=10, lease=30, bot_id=bot)
    await inbox.retry(claim, delay=0.3, error="DatabaseError: connection lost")
    assert await inbox.claim(limit=10, lease=30, bot_id=bot) == []  # m2 must not overtake
    await asyncio.sleep(0.4)
    [again] = await inbox.claim(limit=10, lease=30, bot_id=bot)
    assert (again.external_id, again.attempts) == ("m1", 2)


async def test_an_expired_lease_is_claimable_again_and_the_old_holder_cannot_commit(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    await inbox.put(item(bot, "c", "m1"))
    [stale] = await inbox.claim(limit=1, lease=0.1, bot_id=bot)
    await asyncio.sleep(0.2)
    [fresh] = await inbox.claim(limit=1, lease=30, bot_id=bot)
    assert fresh.seq == stale.seq and fresh.token != stale.token
    assert not await inbox.extend(stale, lease=30)

    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    reply = OutboxItem(channel="telegram", conversation="c", message={"text": "late"})
    with pytest.raises(ClaimLost):
        await conversations.save(
            session, append=[HistoryEntry("user", "m1")], claim=stale, outbox=[reply]
        )
    assert await conversations.get(session.id) is None
    outcome = await inbox.outcome(bot, "telegram", "m1")
    assert outcome is not None and (outcome.status, outcome.replies) == ("running", [])

    await conversations.save(
        session, append=[HistoryEntry("user", "m1")], claim=fresh, outbox=[reply]
    )
    outcome = await inbox.outcome(bot, "telegram", "m1")
    assert outcome is not None
    assert (outcome.status, outcome.session_id) == ("done", session.id)
    assert outcome.replies == [{"text": "late"}]
    assert await inbox.outcome(bot, "telegram", "never") is None
    assert [e.content for e in await conversations.history(session.id)] == ["m1"]


async def test_dead_and_dropped_messages_are_counted_and_not_claimed(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    await inbox.put(item(bot, "c", "m1"))
    await inbox.put(item(bot, "d", "m2"))
    await inbox.put(item(bot, "e", "m3"))
    first, second, _third = await inbox.claim(limit=10, lease=30, bot_id=bot)
    await inbox.finish(first, status="dead", error="retries exhausted: DatabaseError")
    await inbox.finish(second, status="dropped", error="older than 24 h")
    counts = await inbox.counts(bot, "telegram")
    assert (counts.pending, counts.running, counts.dead) == (0, 1, 1)
    assert counts.last_received_at is not None
    assert await inbox.claim(limit=10, lease=30, bot_id=bot) == []


async def commit_reply(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    bot: str,
    conversation: str,
    external_id: str,
    texts: list[str],
) -> None:
    await inbox.put(item(bot, conversation, external_id))
    [claim] = await inbox.claim(limit=1, lease=30, bot_id=bot)
    session = conversations.new(bot_id=bot, channel="telegram", user_id=conversation)
    await conversations.save(
        session,
        claim=claim,
        outbox=[
            OutboxItem(channel="telegram", conversation=conversation, message={"text": t})
            for t in texts
        ],
    )


async def test_the_outbox_hands_out_each_conversations_replies_in_order(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    await commit_reply(inbox, conversations, bot, "c", "m1", ["one", "two"])
    rows = [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot]
    assert [r.message["text"] for r in rows] == ["one"]  # "two" waits for "one"
    row = rows[0]
    assert await outbox.start_part(row, lease=30)
    row = await outbox.part_sent(row, "111")
    await outbox.sent(row)
    rows = [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot]
    assert [r.message["text"] for r in rows] == ["two"]


async def test_a_reply_interrupted_between_parts_goes_on_from_the_next_part(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    await commit_reply(inbox, conversations, bot, "c", "m1", ["long"])
    [row] = [r for r in await outbox.claim(limit=10, lease=0.2) if r.bot_id == bot]
    assert await outbox.start_part(row, lease=0.2)
    await outbox.part_sent(row, "p1")  # then the process dies
    await asyncio.sleep(0.3)
    [again] = [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot]
    assert (again.parts_sent, again.provider_ids, again.attempts) == (1, ("p1",), 2)


async def test_a_reply_whose_part_may_have_left_becomes_unknown_not_sent_again(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    await commit_reply(inbox, conversations, bot, "c", "m1", ["maybe"])
    [row] = [r for r in await outbox.claim(limit=10, lease=0.2) if r.bot_id == bot]
    assert await outbox.start_part(row, lease=0.2)  # the request leaves; the process dies
    await asyncio.sleep(0.3)
    assert [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot] == []
    assert await outbox.parked(bot, "telegram") == 1


async def test_retried_and_parked_replies(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    await commit_reply(inbox, conversations, bot, "c", "m1", ["a"])
    [row] = [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot]
    await outbox.retry(row, delay=0.2, error="RateLimited: retry after 0.2 s")
    assert [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot] == []
    await asyncio.sleep(0.3)
    [row] = [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot]
    await outbox.park(row, status="dead", error="SendRefused: chat not found")
    assert await outbox.parked(bot, "telegram") == 1


async def test_delivery_reports_out_of_order_keep_the_furthest_status(
    outbox: PostgresOutbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    for status in ["read", "sent", "delivered"]:
        await outbox.report(bot, "whatsapp", "wamid.1", status)
    assert await outbox.delivery_status(bot, "whatsapp", "wamid.1") == "read"
    await outbox.report(bot, "whatsapp", "wamid.1", "failed", error_code="131047")
    assert await outbox.delivery_status(bot, "whatsapp", "wamid.1") == "failed"
    assert await outbox.delivery_status(bot, "whatsapp", "wamid.2") is None


async def test_conversation_windows_follow_the_users_messages(
    inbox: PostgresInbox, pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    windows = PostgresConversationWindows(pg_pool)
    bot = unique("bot")
    assert await windows.last_inbound(bot, "telegram", "u") is None
    old = datetime.now(UTC) - timedelta(hours=30)
    await inbox.put(InboxItem(bot, "telegram", "m1", "u", old, {"text": "hi"}, window=True))
    assert await windows.last_inbound(bot, "telegram", "u") == old
    await windows.close_window(bot, "telegram", "u")
    assert await windows.last_inbound(bot, "telegram", "u") is None
    now = datetime.now(UTC) + timedelta(seconds=1)
    await inbox.put(InboxItem(bot, "telegram", "m2", "u", now, {"text": "again"}, window=True))
    assert await windows.last_inbound(bot, "telegram", "u") == now


async def test_a_message_is_written_and_leased_in_one_call_when_its_conversation_is_idle(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    first = await inbox.put_and_claim(item(bot, "c", "m1"), lease=30)
    assert first.seq is not None and first.claim is not None
    assert (first.claim.seq, first.claim.attempts) == (first.seq, 1)
    assert first.claim.message == {"text": "message m1"}
    assert await inbox.status(bot, "telegram", "m1") == "running"
    assert await inbox.claim(limit=10, lease=30, bot_id=bot) == []  # leased already

    # The conversation is busy: the next message is only written, and waits for m1.
    second = await inbox.put_and_claim(item(bot, "c", "m2", delay=30), lease=30)
    assert second.seq is not None and second.claim is None
    assert await inbox.claim(limit=1, lease=30, seq=second.seq) == []
    # A message id seen before: nothing written, nothing leased.
    again = await inbox.put_and_claim(item(bot, "c", "m1"), lease=30)
    assert (again.seq, again.claim) == (None, None)
    # Another conversation is not held up.
    other = await inbox.put_and_claim(item(bot, "d", "m3"), lease=30)
    assert other.claim is not None

    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    await conversations.save(session, claim=first.claim)
    [claim] = await inbox.claim(limit=1, lease=30, seq=second.seq)
    assert claim.external_id == "m2"


async def test_concurrent_messages_of_one_conversation_on_two_instances_lease_one(
    pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    # Two instances (their own connections and batches) racing for one conversation.
    instances = [PostgresInbox(pg_pool, connections=1), PostgresInbox(pg_pool, connections=1)]
    try:
        bot = unique("bot")
        for n in range(10):
            puts = await asyncio.gather(
                *(
                    box.put_and_claim(item(bot, f"c{n}", f"m{n}-{k}"), lease=30)
                    for k, box in enumerate(instances * 2)
                )
            )
            assert all(put.seq is not None for put in puts)
            leased = [put for put in puts if put.claim is not None]
            assert len(leased) == 1, puts
            # The leased message is the oldest of its conversation: no other one overtakes it.
            assert leased[0].seq == min(put.seq for put in puts if put.seq is not None)
    finally:
        for box in instances:
            await box.close()


async def test_the_put_refuses_a_snapshot_older_than_its_locks(pg_pool: asyncpg.Pool) -> None:
    # Leasing at once is right only if the put sees what other puts of its conversation
    # committed while it waited for their lock: not so in a repeatable read transaction.
    async with pg_pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        with pytest.raises(asyncpg.RaiseError, match="read committed"):
            await conn.fetch(
                "SELECT * FROM inbox_put('[]'::json, '{}'::bigint[], 30, gen_random_uuid())"
            )


async def test_the_lease_brings_the_turns_session(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    put = await inbox.put_and_claim(item(bot, "c", "m1"), lease=30, read_session=True)
    assert put.claim is not None and put.session is not None
    assert put.session.session is None  # the user has no session yet
    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    session.state = {"step": 1}
    await conversations.save(session, claim=put.claim)

    by_user = await inbox.put_and_claim(item(bot, "c", "m2"), lease=30, read_session=True)
    assert by_user.session is not None and by_user.session.session is not None
    assert by_user.session.session.id == session.id
    assert by_user.session.session.state == {"step": 1}
    assert by_user.claim is not None
    await conversations.save(session, claim=by_user.claim)

    by_id = await inbox.put_and_claim(
        item(bot, "c", "m3"), lease=30, read_session=True, session_id=session.id.upper()
    )
    assert by_id.session is not None and by_id.session.session is not None
    assert by_id.session.session.id == session.id
    assert by_id.claim is not None
    await conversations.save(session, claim=by_id.claim)
    malformed = await inbox.put_and_claim(
        item(bot, "c", "m4"), lease=30, read_session=True, session_id="not-a-uuid"
    )
    assert malformed.claim is not None and malformed.session is None


async def test_a_lease_taken_with_the_put_is_lost_like_any_other(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    put = await inbox.put_and_claim(item(bot, "c", "m1"), lease=0.1)
    assert put.claim is not None
    await asyncio.sleep(0.2)
    [fresh] = await inbox.claim(limit=1, lease=30, bot_id=bot)
    assert fresh.seq == put.claim.seq and fresh.attempts == 2
    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    reply = OutboxItem(channel="telegram", conversation="c", message={"text": "late"})
    with pytest.raises(ClaimLost):
        await conversations.save(session, claim=put.claim, outbox=[reply])
    assert await conversations.get(session.id) is None
    outcome = await inbox.outcome(bot, "telegram", "m1")
    assert outcome is not None and (outcome.status, outcome.replies) == ("running", [])


async def test_replies_delivered_by_their_turn_are_recorded_with_the_message(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    put = await inbox.put_and_claim(item(bot, "c", "m1"), lease=30)
    assert put.claim is not None
    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    replies = [
        OutboxItem(channel="telegram", conversation="c", message={"text": t}, delivered=True)
        for t in ["one", "two"]
    ]
    await conversations.save(session, claim=put.claim, outbox=replies)
    outcome = await inbox.outcome(bot, "telegram", "m1")
    assert outcome is not None and outcome.status == "done"
    assert outcome.replies == [{"text": "one"}, {"text": "two"}]
    assert [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot] == []


async def test_the_outcome_of_a_message_holds_only_the_replies_to_its_own_conversation(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    # A turn may queue messages to other users (TALK TO) under its claim: they are not
    # replies of this message, and its replay must not show them to its sender.
    bot = unique("bot")
    await inbox.put(item(bot, "c", "m1"))
    [claim] = await inbox.claim(limit=1, lease=30, bot_id=bot)
    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    queued = [
        OutboxItem(channel="telegram", conversation="c", message={"text": "to c"}),
        OutboxItem(channel="telegram", conversation="d", message={"text": "to d"}),
        OutboxItem(channel="whatsapp", conversation="c", message={"text": "to c elsewhere"}),
    ]
    await conversations.save(session, claim=claim, outbox=queued)
    outcome = await inbox.outcome(bot, "telegram", "m1")
    assert outcome is not None and outcome.status == "done"
    assert outcome.replies == [{"text": "to c"}]


async def test_a_row_is_unfinished_exactly_while_it_is_pending_or_running(
    inbox: PostgresInbox, pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    # The lookups by seq and the lease checks test finished_at, not status: the schema
    # keeps the two in step.
    bot = unique("bot")
    seq = await inbox.put(item(bot, "c", "m1"))
    for change in ["status = 'done'", "finished_at = now()"]:
        with pytest.raises(asyncpg.CheckViolationError):
            await pg_pool.execute(f"UPDATE inbox SET {change} WHERE seq = $1", seq)


async def test_the_hot_statements_find_rows_by_key_while_the_tables_are_small(
    pg_dsn: str, pg_schema: Callable[[str], str]
) -> None:
    """While the tables are small, a generic plan must still look rows up by key: one
    made then scanned them (or a partial index) whole, and kept doing so as they grew."""
    from storage import inbox as inbox_sql
    from storage import postgres as store_sql
    from storage.migrate import migrate
    from storage.postgres import create_pool, store_connections

    pool = await create_pool(pg_dsn, schema=pg_schema("plans"))
    try:
        await migrate(pool)
        await pool.execute(
            "INSERT INTO user_sessions (user_id, bot_id, channel)"
            " SELECT 'u' || g, 'bot', 'web' FROM generate_series(1, 300) g"
        )
        await pool.execute(
            "INSERT INTO inbox (bot_id, channel, external_id, conversation, message,"
            " received_at, status, finished_at)"
            " SELECT 'bot', 'web', 'm' || g, 'u' || g % 100, '{}', now(), 'done', now()"
            " FROM generate_series(1, 300) g"
        )
        await pool.execute("ANALYZE user_sessions; ANALYZE inbox")
        token = "00000000-0000-0000-0000-000000000000"
        kept = store_connections(pool, size=1)  # the connections the hot path runs on
        statements = [
            (kept, store_sql._SAVE, ("[]", "[]", [], [1, 2], "[]", "[]")),
            (kept, store_sql._GET, ([token],)),
            (kept, inbox_sql._CLAIM_ONE, (1, 30.0, token)),
            (pool, inbox_sql._EXTEND, (1, token, 30.0)),
            (pool, inbox_sql._FINISH, (1, token, "done", None)),
            # A web request's wait for its message's outcome, and a message's status, which
            # follow a folded message to the row that carries it (migration 0016).
            (pool, inbox_sql._OUTCOME, ("bot", "web", "m7")),
            (pool, inbox_sql._STATUS, ("bot", "web", "m7")),
            # Gathering an album's or a burst's messages into the leased one.
            (pool, inbox_sql._GATHER_HEAD, (1, token)),
            (pool, inbox_sql._GATHER_NEXT, ("bot", "web", "u7", 1, datetime.now(UTC), 50)),
            (pool, inbox_sql._GATHER_FOLD, (1, {}, [2, 3])),
        ]
        try:
            for db, sql, args in statements:
                plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + sql, *args))
                assert "Seq Scan on inbox" not in plan, plan
                assert "Seq Scan on user_sessions" not in plan, plan
                # seq is the fourth column of idx_inbox_conversation: no lookup by seq there.
                lines = plan.splitlines()
                for line, following in itertools.pairwise(lines):
                    if "idx_inbox_conversation" in line:
                        assert "Index Cond: (seq" not in following, plan
        finally:
            await kept.close()
    finally:
        await pool.close()


async def test_what_a_turn_streamed_is_recorded_by_its_holder_and_given_to_its_retry(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    pg_pool: asyncpg.Pool,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    await inbox.put(item(bot, "c", "m1"))
    [stale] = await inbox.claim(limit=1, lease=0.1, bot_id=bot)
    assert stale.live == ()
    assert await inbox.record_live(stale, {"id": "2001"})
    await asyncio.sleep(0.2)  # the process died; its lease expires
    [retry] = await inbox.claim(limit=1, lease=30, bot_id=bot)
    assert retry.live == ({"id": "2001"},)
    # The dead holder's stream, were it still sending, records nothing any more.
    assert not await inbox.record_live(stale, {"id": "2099"})
    assert await inbox.record_live(retry, {"id": "2002", "end": 12, "sha": "ab"})

    # The commit: the reply's row starts with the parts sent live; the record is cleared.
    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    reply = OutboxItem(
        channel="telegram",
        conversation="c",
        message={"text": "streamed", "live": {"mode": "edit", "ids": ["2001"]}},
        parts_sent=1,
        provider_ids=("2001",),
    )
    await conversations.save(session, claim=retry, outbox=[reply])
    [row] = [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot]
    assert (row.parts_sent, row.provider_ids) == (1, ("2001",))
    assert await pg_pool.fetchval("SELECT live FROM inbox WHERE seq = $1", retry.seq) is None


async def test_an_edit_on_its_way_at_a_crash_is_handed_out_again_not_parked(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    await commit_reply(inbox, conversations, bot, "c", "m1", ["final edit"])
    assert await outbox.busy(bot, "telegram", "c")
    assert not await outbox.busy(bot, "telegram", "other")
    [row] = [r for r in await outbox.claim(limit=10, lease=0.2) if r.bot_id == bot]
    assert await outbox.start_part(row, lease=0.2, in_flight=False)  # the process dies
    await asyncio.sleep(0.3)
    [again] = [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot]
    assert (again.seq, again.attempts) == (row.seq, 2)
    await outbox.sent(await outbox.part_sent(again, "2001"))
    assert not await outbox.busy(bot, "telegram", "c")


# -- the outbox's records, shared by concurrent sends ------------------------------------------


async def _row_state(pool: asyncpg.Pool, seq: int) -> tuple[str, int, list[str], bool]:
    row = await pool.fetchrow(
        "SELECT status, parts_sent, provider_ids, in_flight FROM outbox WHERE seq = $1", seq
    )
    assert row is not None
    return row[0], row[1], list(row[2]), row[3]


async def test_concurrent_records_each_land_on_their_own_row(
    pg_pool: asyncpg.Pool,
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    chats = [f"c{i}" for i in range(40)]
    for chat in chats:
        await commit_reply(inbox, conversations, bot, chat, f"m-{chat}", [f"to {chat}"])
    rows = [r for r in await outbox.claim(limit=100, lease=30) if r.bot_id == bot]
    assert sorted(r.conversation for r in rows) == sorted(chats)

    async def two_parts(row: OutboxRow) -> None:
        assert await outbox.start_part(row, lease=30)
        row = await outbox.part_sent(row, f"{row.conversation}-1")
        assert await outbox.start_part(row, lease=30)
        await outbox.part_sent(row, f"{row.conversation}-2", done=True)

    await asyncio.gather(*(two_parts(row) for row in rows))  # 40 rows' records at once
    for row in rows:
        chat = row.conversation
        assert await _row_state(pg_pool, row.seq) == ("sent", 2, [f"{chat}-1", f"{chat}-2"], False)
    assert [r for r in await outbox.claim(limit=100, lease=30) if r.bot_id == bot] == []


@pytest.mark.parametrize("held", [1, 5])  # a statement of its own; one shared
async def test_a_lost_lease_fails_only_its_own_record(
    pg_pool: asyncpg.Pool,
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
    held: int,
) -> None:
    bot = unique("bot")
    chats = [f"held{i}" for i in range(held)]
    for chat in [*chats, "lost"]:
        await commit_reply(inbox, conversations, bot, chat, f"m-{chat}", [chat])
    rows = {r.conversation: r for r in await outbox.claim(limit=100, lease=30) if r.bot_id == bot}
    stale = dataclasses.replace(rows["lost"], token=str(uuid.uuid4()))  # another holder's lease
    mine = [rows[chat] for chat in chats]
    started = await asyncio.gather(
        *(outbox.start_part(row, lease=30) for row in mine), outbox.start_part(stale, lease=30)
    )
    assert started == [True] * held + [False]
    await asyncio.gather(
        *(outbox.part_sent(row, f"{row.conversation}-1", done=True) for row in mine),
        outbox.part_sent(stale, "x", done=True),
    )
    for row in mine:
        assert await _row_state(pg_pool, row.seq) == ("sent", 1, [f"{row.conversation}-1"], False)
    assert await _row_state(pg_pool, rows["lost"].seq) == ("sending", 0, [], False)


async def test_one_rows_records_land_in_the_order_they_were_made(
    pg_pool: asyncpg.Pool,
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    outbox: PostgresOutbox,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    await commit_reply(inbox, conversations, bot, "c", "m1", ["three parts"])
    [row] = [r for r in await outbox.claim(limit=10, lease=30) if r.bot_id == bot]
    # Made without waiting for each other: had "done" gone first, the later records would
    # find the lease gone and count nothing.
    records = [
        asyncio.create_task(outbox.start_part(row, lease=30)),
        asyncio.create_task(outbox.part_sent(row, "p1")),
        asyncio.create_task(outbox.part_sent(row, "p2")),
        asyncio.create_task(outbox.part_sent(row, "p3", done=True)),
    ]
    await asyncio.gather(*records)
    assert await _row_state(pg_pool, row.seq) == ("sent", 3, ["p1", "p2", "p3"], False)
