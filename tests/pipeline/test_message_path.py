"""The message path on a real PostgreSQL: one turn per message however often it arrives,
each conversation in order, failures on our side retried without harming the dialog."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from channels.base import InboundMessage
from config.settings import BUNDLED_TEMPLATES
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher, default_stages
from pipeline.errors import TurnFailed
from pipeline.message_codec import inbound_to_json
from pipeline.message_path import MessagePath, MessageQueued, PathPolicy
from pipeline.services import Services
from pipeline.turn import Next, Stage, Turn
from storage.base import InboxItem, Session
from storage.postgres import DatabaseError
from storage.services import Stores
from tests.pipeline.conftest import Replies

CHANNEL = "test-queue"
# The default bot's first two turns, as the history keeps them: "hi", then a name.
OPENING = [
    "hi",
    "Hello! I am the botserver assistant. What is your name?",
    "Ada",
    "Nice to meet you, Ada!",
]
FAST = PathPolicy(workers=8, lease=5.0, poll_interval=0.05, backoff_base=0.05, backoff_cap=0.2)


@pytest.fixture(scope="module")
async def default_bot() -> BotRegistry:
    bots = BotRegistry(BUNDLED_TEMPLATES)
    await bots.load_all()
    return bots


def message(
    conversation: str,
    text: str,
    *,
    external_id: str | None = None,
    received_at: datetime | None = None,
) -> InboundMessage:
    return InboundMessage(
        channel=CHANNEL,
        bot="default",
        conversation=conversation,
        sender=conversation,
        external_id=external_id or uuid.uuid4().hex,
        text=text,
        **({"received_at": received_at} if received_at else {}),
    )


@pytest.fixture
def make_path(
    default_bot: BotRegistry, stores: Stores
) -> Callable[..., AsyncIterator[MessagePath]]:
    async def make(
        *, extra: list[Stage] | None = None, policy: PathPolicy = FAST
    ) -> AsyncIterator[MessagePath]:
        services = Services(conversations=stores.conversations, locks=stores.locks)
        dispatcher = Dispatcher(default_bot, services, stages=[*(extra or []), *default_stages()])
        path = MessagePath(dispatcher, stores.inbox, policy=policy, delivered_by_channel={CHANNEL})
        path.start()
        try:
            yield path
        finally:
            await path.stop()

    return make


async def settle(stores: Stores, bot: str, conversations: list[str]) -> None:
    """Wait until no message of these conversations is pending or running."""
    for _ in range(400):
        counts = await stores.inbox.counts(bot, CHANNEL)
        if counts.pending == 0 and counts.running == 0:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"messages still queued: {counts}")


async def bot_texts(stores: Stores, conversation: str) -> list[str]:
    session = await stores.conversations.find_active(
        bot_id="default", channel=CHANNEL, user_id=conversation
    )
    assert session is not None
    return [e.content for e in await stores.conversations.history(session.id, limit=500)]


async def test_a_message_delivered_three_times_concurrently_runs_one_turn(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async for path in make_path():
        user = f"u-{uuid.uuid4().hex[:8]}"
        same = message(user, "hi", external_id="update-1")
        accepted = await asyncio.gather(*(path.accept(same) for _ in range(3)))
        assert sorted(accepted) == [False, False, True]
        assert not await path.accept(same)  # and once more, later
        await settle(stores, "default", [user])
        history = await bot_texts(stores, user)
        assert history == ["hi", "Hello! I am the botserver assistant. What is your name?"]
        outcome = await stores.inbox.outcome("default", CHANNEL, "update-1")
        assert outcome is not None and outcome.status == "done"
        assert len(outcome.replies) == 1


async def test_fifty_interleaved_conversations_keep_their_order(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async def slow(turn: Turn, next_: Next) -> None:
        await asyncio.sleep(0.002 * (hash(turn.text) % 5))  # turns finish out of order
        await next_(turn)

    async for path in make_path(extra=[slow]):
        users = [f"o{n}-{uuid.uuid4().hex[:6]}" for n in range(50)]
        for step in ["hi", "Ada", "name", "help"]:
            for user in users:
                await path.accept(message(user, step))
        await settle(stores, "default", users)
        for user in users:
            history = await bot_texts(stores, user)
            assert [history[i] for i in (0, 2, 5, 8)] == ["hi", "Ada", "name", "help"], history
            assert history[3] == "Nice to meet you, Ada!"
            assert history[6] == "Of course: your name is Ada."


# The worker polls the inbox only this often here: a message answered within settle()'s
# 10 s was run because the accept leased it, or because the end of a turn woke the worker.
NO_POLLING = PathPolicy(workers=8, lease=5.0, poll_interval=60.0, backoff_base=0.05)


async def test_an_accepted_message_is_leased_and_its_turn_started_by_the_accept(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async for path in make_path(policy=NO_POLLING):
        await settle(stores, "default", [])  # (no message of another test left running)
        users = [f"a{n}-{uuid.uuid4().hex[:6]}" for n in range(5)]
        for user in users:
            assert await path.accept(message(user, "hi"))
        await settle(stores, "default", users)
        assert path.counters.leased_on_accept == 5
        for user in users:
            assert (await bot_texts(stores, user))[1:] == [
                "Hello! I am the botserver assistant. What is your name?"
            ]


async def test_messages_waiting_behind_their_conversation_run_when_its_turn_ends(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async def slow(turn: Turn, next_: Next) -> None:
        await asyncio.sleep(0.05)  # the next lines arrive while this turn runs
        await next_(turn)

    async for path in make_path(extra=[slow], policy=NO_POLLING):
        user = f"w-{uuid.uuid4().hex[:8]}"
        for step in ["hi", "Ada", "name", "help"]:
            assert await path.accept(message(user, step))
        await settle(stores, "default", [user])
        assert path.counters.leased_on_accept == 1  # the others waited for it
        history = await bot_texts(stores, user)
        assert history[:4] == OPENING
        assert [h for h in history if h in ("name", "help")] == ["name", "help"]


async def test_messages_accepted_with_every_slot_taken_run_as_slots_free(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async def slow(turn: Turn, next_: Next) -> None:
        await asyncio.sleep(0.05)
        await next_(turn)

    one_slot = PathPolicy(workers=1, lease=5.0, poll_interval=60.0, backoff_base=0.05)
    async for path in make_path(extra=[slow], policy=one_slot):
        users = [f"s{n}-{uuid.uuid4().hex[:6]}" for n in range(4)]
        for user in users:
            assert await path.accept(message(user, "hi"))
        await settle(stores, "default", users)
        assert path.counters.leased_on_accept == 1
        assert path.counters.turns == 4
        for user in users:
            assert len(await bot_texts(stores, user)) == 2


def store_outage(text: str, *, times: int) -> tuple[Stage, dict[str, int]]:
    """A stage before the others: the store goes away, before the save, in the first
    ``times`` turns of ``text``; and the count of those left."""
    failures = {"left": times}

    async def outage(turn: Turn, next_: Next) -> None:
        if turn.text == text and failures["left"]:
            failures["left"] -= 1
            raise DatabaseError("ConnectionDoesNotExistError: connection was closed")
        await next_(turn)

    return outage, failures


async def test_a_store_outage_is_retried_and_the_waiting_dialog_survives(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    outage, failures = store_outage("Ada", times=2)
    async for path in make_path(extra=[outage]):
        user = f"u-{uuid.uuid4().hex[:8]}"
        await path.accept(message(user, "hi"))
        await path.accept(message(user, "Ada", external_id=f"{user}-2"))
        await settle(stores, "default", [user])
        assert failures["left"] == 0
        history = await bot_texts(stores, user)
        assert history[:4] == OPENING
        assert path.counters.retried == 2


async def test_a_turn_failing_every_time_is_parked_with_its_reason(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async def broken(turn: Turn, next_: Next) -> None:
        raise DatabaseError("the database is down")

    policy = PathPolicy(
        workers=2,
        lease=5.0,
        poll_interval=0.05,
        backoff_base=0.02,
        backoff_cap=0.05,
        max_attempts=3,
    )
    async for path in make_path(extra=[broken], policy=policy):
        user = f"u-{uuid.uuid4().hex[:8]}"
        await path.accept(message(user, "hi", external_id=f"{user}-1"))
        await settle(stores, "default", [user])
        outcome = await stores.inbox.outcome("default", CHANNEL, f"{user}-1")
        assert outcome is not None and outcome.status == "dead"
        assert outcome.error is not None and "retries exhausted" in outcome.error
        assert "the database is down" in outcome.error
        assert path.counters.parked == 1


async def test_a_message_older_than_the_limit_is_dropped(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    policy = PathPolicy(workers=2, poll_interval=0.05, max_age=3600)
    async for path in make_path(policy=policy):
        user = f"u-{uuid.uuid4().hex[:8]}"
        old = datetime.now(UTC) - timedelta(hours=2)
        await path.accept(message(user, "hi", external_id=f"{user}-old", received_at=old))
        await settle(stores, "default", [user])
        outcome = await stores.inbox.outcome("default", CHANNEL, f"{user}-old")
        assert outcome is not None and outcome.status == "dropped"
        assert path.counters.dropped == 1


async def test_two_workers_on_one_database_answer_each_message_once_in_order(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    first, second = make_path(), make_path()
    a = await anext(first)
    b = await anext(second)
    try:
        users = [f"t{n}-{uuid.uuid4().hex[:6]}" for n in range(20)]
        for step in ["hi", "Ada", "name"]:
            for n, user in enumerate(users):
                await (a if n % 2 else b).accept(message(user, step))
        await settle(stores, "default", users)
        for user in users:
            history = await bot_texts(stores, user)
            assert [history[i] for i in (0, 2, 5)] == ["hi", "Ada", "name"], history
            assert history[3] == "Nice to meet you, Ada!" and len(history) == 8, history
        assert a.counters.turns + b.counters.turns == 60
        assert a.counters.turns > 0 and b.counters.turns > 0
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_worker_stopped_mid_turn_leaves_its_message_to_another(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    started = asyncio.Event()

    async def hang(turn: Turn, next_: Next) -> None:
        started.set()
        await asyncio.sleep(3600)  # the process dies here

    short = PathPolicy(workers=2, lease=0.5, poll_interval=0.05)
    dying = make_path(extra=[hang], policy=short)
    path = await anext(dying)
    user = f"u-{uuid.uuid4().hex[:8]}"
    await path.accept(message(user, "hi", external_id=f"{user}-1"))
    await asyncio.wait_for(started.wait(), 5)
    await path.stop(drain=0)  # its turn is cancelled: nothing committed, the lease remains
    await dying.aclose()

    async for survivor in make_path(policy=short):
        await settle(stores, "default", [user])
        assert await bot_texts(stores, user) == [
            "hi",
            "Hello! I am the botserver assistant. What is your name?",
        ]
        assert survivor.counters.turns == 1


def web_message(user: str, text: str, session_id: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="web",
        bot="default",
        conversation=user,
        sender=user,
        external_id=uuid.uuid4().hex,
        text=text,
        session_id=session_id,
    )


async def test_an_inline_turn_reads_its_session_with_its_lease(
    make_path: Callable[..., AsyncIterator[MessagePath]],
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[str] = []
    store = stores.conversations
    get, find = store.get, store.find_active

    async def counted_get(session_id: str) -> Session | None:
        reads.append("get")
        return await get(session_id)

    async def counted_find(*, bot_id: str, channel: str, user_id: str) -> Session | None:
        reads.append("find")
        return await find(bot_id=bot_id, channel=channel, user_id=user_id)

    async for path in make_path():
        user = f"u-{uuid.uuid4().hex[:8]}"
        first = await path.run_inline(web_message(user, "hi"), Replies())
        assert first.session_id is not None and not first.recorded
        assert [r.text for r in first.replies] == [
            "Hello! I am the botserver assistant. What is your name?"
        ]
        # The session stage still asks the store; the store answers from the lease's read.
        monkeypatch.setattr(store, "_gets", None)  # a round trip of its own would fail
        monkeypatch.setattr(store, "_finds", None)
        monkeypatch.setattr(store, "get", counted_get)
        monkeypatch.setattr(store, "find_active", counted_find)
        second = await path.run_inline(web_message(user, "Ada", first.session_id), Replies())
        assert second.replies[0].text == "Nice to meet you, Ada!"
        third = await path.run_inline(web_message(user, "name"), Replies())  # no session id
        assert third.replies[0].text == "Of course: your name is Ada."
        assert reads == ["get", "find"] and second.session_id == third.session_id


async def test_concurrent_inline_messages_of_one_conversation_run_in_order(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async for path in make_path():
        user = f"u-{uuid.uuid4().hex[:8]}"
        first = await path.run_inline(web_message(user, "hi"), Replies())
        # Sent together: each runs after the one before it and gets its own replies.
        steps = ["Ada", "name", "help"]
        results = await asyncio.gather(
            *(path.run_inline(web_message(user, t, first.session_id), Replies()) for t in steps)
        )
        history = await stores.conversations.history(first.session_id or "", limit=50)
        users = [e.content for e in history if e.role == "user"]
        assert sorted(users[1:]) == sorted(steps) and len(users) == 4
        for result, text in zip(results, steps, strict=True):
            position = [e.content for e in history].index(text)
            replies = [e.content for e in history[position + 1 :]][: len(result.replies)]
            assert [r.text for r in result.replies] == replies


async def test_an_inline_message_kept_waiting_too_long_is_queued_and_run_by_a_worker(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    release = asyncio.Event()

    async def hold(turn: Turn, next_: Next) -> None:
        if turn.text == "hi":
            await release.wait()  # the conversation's first turn runs on and on
        await next_(turn)

    impatient = PathPolicy(
        workers=8, lease=5.0, poll_interval=0.05, inline_timeout=0.3, inline_grace=0.5
    )
    async for path in make_path(extra=[hold], policy=impatient):
        user = f"q-{uuid.uuid4().hex[:8]}"
        first = asyncio.ensure_future(path.run_inline(web_message(user, "hi"), Replies()))
        await asyncio.sleep(0.1)
        ada = web_message(user, "Ada")
        with pytest.raises(MessageQueued):
            await path.run_inline(ada, Replies())
        release.set()
        session_id = (await first).session_id
        for _ in range(400):  # a worker runs it once the first turn is done
            outcome = await stores.inbox.outcome("default", "web", ada.external_id)
            if outcome is not None and outcome.status == "done":
                break
            await asyncio.sleep(0.025)
        history = await stores.conversations.history(session_id or "", limit=10)
        assert [e.content for e in history][:4] == OPENING


async def test_a_turn_longer_than_its_lease_keeps_it(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async def slow(turn: Turn, next_: Next) -> None:
        await asyncio.sleep(0.8)  # past the 0.3 s lease: the heartbeat must extend it
        await next_(turn)

    policy = PathPolicy(workers=2, lease=0.3, poll_interval=0.05)
    async for path in make_path(extra=[slow], policy=policy):
        user = f"u-{uuid.uuid4().hex[:8]}"
        result = await path.run_inline(web_message(user, "hi"), Replies())
        assert [r.text for r in result.replies] == [
            "Hello! I am the botserver assistant. What is your name?"
        ]
        assert path.counters.turns == 1  # no worker took the message meanwhile


# -- turns written with their outcome (a web message without an id of its own) ---------------


async def test_a_message_without_an_id_of_its_own_is_written_with_its_outcome(
    make_path: Callable[..., AsyncIterator[MessagePath]],
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async for path in make_path():
        user = f"w-{uuid.uuid4().hex[:8]}"
        # No write before the turn: a put would fail here.
        monkeypatch.setattr(stores.inbox, "_leases", None)
        monkeypatch.setattr(stores.inbox, "_puts", None)
        replies = []
        for text in ("hi", "Ada"):
            sent = web_message(user, text)
            result = await path.run_inline(sent, Replies(), written_after=True)
            replies += [r.text for r in result.replies][:1]
            outcome = await stores.inbox.outcome("default", "web", sent.external_id)
            assert outcome is not None and outcome.status == "done"
            assert outcome.session_id == result.session_id
            assert [r["text"] for r in outcome.replies] == [r.text for r in result.replies]
        assert replies == [OPENING[1], OPENING[3]]
        history = await stores.conversations.history(result.session_id or "", limit=10)
        assert [e.content for e in history][:4] == OPENING
        assert path.counters.written_after == 2 and path.counters.run_again == 0


async def test_a_turn_whose_conversation_changed_meanwhile_runs_again_written_first(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    meanwhile: list[InboundMessage] = []

    async def interleave(turn: Turn, next_: Next) -> None:
        if turn.text == "Ada" and not meanwhile:  # after the read, another message arrives
            meanwhile.append(web_message(turn.message.conversation, "name"))
            await stores.inbox.put(
                InboxItem(
                    bot_id="default",
                    channel="web",
                    external_id=meanwhile[0].external_id,
                    conversation=turn.message.conversation,
                    received_at=meanwhile[0].received_at,
                    message=inbound_to_json(meanwhile[0]),
                )
            )
        await next_(turn)

    async for path in make_path(extra=[interleave]):
        user = f"w-{uuid.uuid4().hex[:8]}"
        await path.run_inline(web_message(user, "hi"), Replies(), written_after=True)
        ada = web_message(user, "Ada")
        result = await path.run_inline(ada, Replies(), written_after=True)
        assert path.counters.run_again == 1
        # The message that arrived meanwhile ran first (a worker), then this one, once.
        history = await stores.conversations.history(result.session_id or "", limit=20)
        texts = [e.content for e in history]
        assert [e.content for e in history if e.role == "user"] == ["hi", "name", "Ada"]
        position = texts.index("Ada")
        assert [r.text for r in result.replies] == texts[position + 1 :]
        outcome = await stores.inbox.outcome("default", "web", ada.external_id)
        assert outcome is not None and outcome.status == "done"


async def test_a_failure_on_our_side_writes_the_message_for_the_workers(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    outage, failures = store_outage("Ada", times=1)
    async for path in make_path(extra=[outage]):
        user = f"w-{uuid.uuid4().hex[:8]}"
        first = await path.run_inline(web_message(user, "hi"), Replies(), written_after=True)
        ada = web_message(user, "Ada")
        with pytest.raises(TurnFailed):
            await path.run_inline(ada, Replies(), written_after=True)
        for _ in range(400):  # a worker runs it after the backoff
            outcome = await stores.inbox.outcome("default", "web", ada.external_id)
            if outcome is not None and outcome.status == "done":
                break
            await asyncio.sleep(0.025)
        history = await stores.conversations.history(first.session_id or "", limit=10)
        assert [e.content for e in history][:4] == OPENING
        assert path.counters.retried == 1 and failures["left"] == 0


async def test_messages_without_ids_of_one_conversation_run_one_after_the_other_here(
    make_path: Callable[..., AsyncIterator[MessagePath]], stores: Stores
) -> None:
    async for path in make_path():
        user = f"w-{uuid.uuid4().hex[:8]}"
        first = await path.run_inline(web_message(user, "hi"), Replies(), written_after=True)
        steps = ["Ada", "name", "help"]
        results = await asyncio.gather(
            *(
                path.run_inline(
                    web_message(user, t, first.session_id), Replies(), written_after=True
                )
                for t in steps
            )
        )
        history = await stores.conversations.history(first.session_id or "", limit=50)
        texts = [e.content for e in history]
        assert [e.content for e in history if e.role == "user"] == ["hi", *steps]
        for result, text in zip(results, steps, strict=True):
            position = texts.index(text)
            assert [r.text for r in result.replies] == texts[position + 1 :][: len(result.replies)]
        # Each waited for the one before it here, rather than finding its conversation changed.
        assert path.counters.run_again == 0 and path.counters.written_after == 4
