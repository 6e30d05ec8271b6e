"""The inbox's gathering contract (albums, bursts), on every PostgreSQL backend.

A leased message folds in the pending messages after it that the gatherer picks, in one
transaction: the leased row carries the merged message, the folded rows are finished as
merged and answer with its status and replies; a crash before the turn commits leaves
the merged message leased again, never a folded row to run twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from storage.base import HistoryEntry, InboxItem, OutboxItem
from storage.inbox import PostgresInbox
from storage.postgres import PostgresConversationStore


def item(bot: str, external_id: str, text: str, *, delay: float = 0.0) -> InboxItem:
    return InboxItem(
        bot_id=bot,
        channel="telegram",
        external_id=external_id,
        conversation="c",
        received_at=datetime.now(UTC),
        message={"text": text},
        delay=delay,
    )


class Joiner:
    """A gatherer that takes the messages whose text starts with ``+``, written within
    ``window`` seconds of the leased one, and joins the texts; it notes what it saw."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self.seen: list[list[tuple[str, float]]] = []

    def __call__(
        self, head: dict[str, Any], following: Sequence[tuple[dict[str, Any], float]]
    ) -> tuple[int, dict[str, Any]] | None:
        self.seen.append([(m["text"], after) for m, after in following])
        taken = []
        for message, after in following:
            if not message["text"].startswith("+") or after > self.window:
                break
            taken.append(message["text"])
        if not taken:
            return None
        return len(taken), {"text": " ".join([head["text"], *taken])}


async def test_a_leased_message_folds_in_the_next_ones_and_they_share_its_outcome(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    for n, text in enumerate(["photo 1", "+photo 2", "+photo 3", "later"], start=1):
        await inbox.put(item(bot, f"m{n}", text))
    [claim] = await inbox.claim(limit=10, lease=30, bot_id=bot)
    joiner = Joiner()
    gathered = await inbox.gather(claim, joiner)
    assert gathered is not None
    assert gathered.message == {"text": "photo 1 +photo 2 +photo 3"}
    assert (gathered.seq, gathered.token) == (claim.seq, claim.token)
    assert len(gathered.merged) == 2
    assert [text for text, _ in joiner.seen[0]] == ["+photo 2", "+photo 3", "later"]
    assert all(0 <= after < 5 for _, after in joiner.seen[0])
    # The folded rows are finished; they answer with the running turn's status.
    assert [await inbox.status(bot, "telegram", m) for m in ("m1", "m2", "m3", "m4")] == [
        "running",
        "running",
        "running",
        "pending",
    ]
    counts = await inbox.counts(bot, "telegram")
    assert (counts.pending, counts.running) == (1, 1)

    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    reply = OutboxItem(channel="telegram", conversation="c", message={"text": "3 photos"})
    await conversations.save(
        session, append=[HistoryEntry("user", "x")], claim=gathered, outbox=[reply]
    )
    for external_id in ("m1", "m2", "m3"):
        outcome = await inbox.outcome(bot, "telegram", external_id)
        assert outcome is not None
        assert (outcome.status, outcome.session_id) == ("done", session.id)
        assert outcome.replies == [{"text": "3 photos"}]  # recorded once, read by any id
    # What did not belong runs a turn of its own, its message untouched.
    [last] = await inbox.claim(limit=10, lease=30, bot_id=bot)
    assert (last.external_id, last.message) == ("m4", {"text": "later"})
    assert await inbox.gather(last, joiner) is last
    # A redelivered folded message is still a duplicate.
    assert await inbox.put(item(bot, "m2", "+photo 2")) is None


async def test_the_seconds_between_writes_come_from_the_database_clock(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    await inbox.put(item(bot, "m1", "a"))
    await asyncio.sleep(0.5)
    await inbox.put(item(bot, "m2", "+b"))
    [claim] = await inbox.claim(limit=10, lease=30, bot_id=bot)
    joiner = Joiner(window=0.2)
    gathered = await inbox.gather(claim, joiner)
    [[(_, after)]] = joiner.seen
    assert 0.45 < after < 5
    assert gathered is claim  # outside the window: nothing folded
    assert await inbox.status(bot, "telegram", "m2") == "pending"


async def test_a_held_back_message_is_not_leased_before_its_window(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    await inbox.put(item(bot, "m1", "a", delay=0.4))
    await inbox.put(item(bot, "m2", "+b", delay=0.4))
    assert await inbox.claim(limit=10, lease=30, bot_id=bot) == []
    await asyncio.sleep(0.5)
    [claim] = await inbox.claim(limit=10, lease=30, bot_id=bot)
    assert claim.external_id == "m1"  # the first; the second waits behind it


async def test_a_crash_after_the_fold_leases_the_merged_message_again_and_folds_no_more(
    inbox: PostgresInbox,
    conversations: PostgresConversationStore,
    unique: Callable[[str], str],
) -> None:
    bot = unique("bot")
    for n, text in enumerate(["a", "+b", "+c"], start=1):
        await inbox.put(item(bot, f"m{n}", text))
    [claim] = await inbox.claim(limit=10, lease=0.2, bot_id=bot)
    gathered = await inbox.gather(claim, Joiner())
    assert gathered is not None and len(gathered.merged) == 2
    await asyncio.sleep(0.3)  # the worker died: its lease expires
    [again] = await inbox.claim(limit=10, lease=30, bot_id=bot)
    assert await inbox.gather(claim, Joiner()) is None  # the old holder is out
    assert (again.seq, again.attempts) == (claim.seq, 2)
    assert again.message == {"text": "a +b +c"}
    joiner = Joiner()
    assert await inbox.gather(again, joiner) is again
    assert joiner.seen == [[]]  # the folded rows are finished: nothing to fold twice
    session = conversations.new(bot_id=bot, channel="telegram", user_id="c")
    await conversations.save(session, claim=again)
    assert [await inbox.status(bot, "telegram", m) for m in ("m1", "m2", "m3")] == ["done"] * 3
    assert await inbox.claim(limit=10, lease=30, bot_id=bot) == []


async def test_a_parked_message_parks_what_was_folded_into_it(
    inbox: PostgresInbox, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    await inbox.put(item(bot, "m1", "a"))
    await inbox.put(item(bot, "m2", "+b"))
    [claim] = await inbox.claim(limit=10, lease=30, bot_id=bot)
    gathered = await inbox.gather(claim, Joiner())
    assert gathered is not None
    await inbox.finish(gathered, status="dead", error="refused")
    outcome = await inbox.outcome(bot, "telegram", "m2")
    assert outcome is not None and (outcome.status, outcome.error) == ("dead", "refused")
    assert await inbox.status(bot, "telegram", "m2") == "dead"
    assert (await inbox.counts(bot, "telegram")).dead == 1  # one message parked, not two


async def test_a_folded_row_names_its_carrier(
    inbox: PostgresInbox, pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    seq = await inbox.put(item(bot, "m1", "a"))
    with pytest.raises(asyncpg.CheckViolationError):
        await pg_pool.execute(
            "UPDATE inbox SET status = 'merged', finished_at = now() WHERE seq = $1", seq
        )
