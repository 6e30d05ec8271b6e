"""Gathering on the message path, on a real PostgreSQL: an album's items accepted one by
one run one turn once their window is over, and an inbox failure while they are gathered
gives the message back to be tried again, losing none and answering none twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from channels.base import Attachment, InboundMessage, MediaKind
from config.settings import BUNDLED_TEMPLATES
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.gathering import GatherPolicy
from pipeline.message_path import MessagePath, PathPolicy
from pipeline.services import Services
from storage.inbox import PostgresInbox
from storage.postgres import create_pool
from storage.services import Stores

FAST = PathPolicy(workers=4, lease=5.0, poll_interval=0.05, backoff_base=0.05, backoff_cap=0.2)
WINDOW = 0.3


@pytest.fixture(scope="module")
async def default_bot() -> BotRegistry:
    bots = BotRegistry(BUNDLED_TEMPLATES)
    await bots.load_all()
    return bots


@pytest.fixture
async def impatient_inbox(stores: Stores, server_database_url: str) -> AsyncIterator[PostgresInbox]:
    """The inbox of ``stores`` on connections that give up waiting for a row lock after
    0.2 s (``lock_timeout``): a lock held elsewhere becomes a database error."""
    schema = await stores.pool.fetchval("SELECT current_schema()")
    pool = await create_pool(f"{server_database_url}?lock_timeout=200", schema=schema)
    inbox = PostgresInbox(pool)
    yield inbox
    await inbox.close()
    await pool.close()


def photo(conversation: str, n: int, caption: str = "") -> InboundMessage:
    return InboundMessage(
        channel="telegram",
        bot="default",
        conversation=conversation,
        sender=conversation,
        external_id=f"{conversation}-{n}",
        text=caption,
        attachments=(Attachment(MediaKind.IMAGE, "image/jpeg", provider_id=f"file-{n}"),),
        raw={"media_group_id": f"album-{conversation}"},
    )


async def statuses(stores: Stores, conversation: str) -> list[tuple[str, int]]:
    rows = await stores.pool.fetch(
        "SELECT status, attempts FROM inbox WHERE conversation = $1 ORDER BY seq", conversation
    )
    return [(r[0], r[1]) for r in rows]


async def test_an_inbox_failure_while_gathering_is_retried_and_the_album_stays_one_turn(
    default_bot: BotRegistry,
    stores: Stores,
    impatient_inbox: PostgresInbox,
    server_database_url: str,
) -> None:
    services = Services(conversations=stores.conversations, locks=stores.locks)
    path = MessagePath(
        Dispatcher(default_bot, services),
        impatient_inbox,
        policy=FAST,
        delivered_by_channel={"telegram"},
        gathering=lambda bot: GatherPolicy(album_window=WINDOW),
    )
    user = f"u-{uuid.uuid4().hex[:8]}"
    path.start()
    blocker = await asyncpg.connect(server_database_url)
    try:
        for n in (1, 2, 3):
            assert await path.accept(photo(user, n, "our trip" if n == 1 else ""))
        # Something holds the second item's row: the gathering cannot lock it in time.
        schema = await stores.pool.fetchval("SELECT current_schema()")
        await blocker.execute(f'SET search_path = "{schema}"')
        held = blocker.transaction()
        await held.start()
        await blocker.execute("SELECT 1 FROM inbox WHERE external_id = $1 FOR UPDATE", f"{user}-2")
        for _ in range(100):
            error = await stores.pool.fetchval(
                "SELECT last_error FROM inbox WHERE external_id = $1", f"{user}-1"
            )
            if error:
                break
            await asyncio.sleep(0.05)
        assert error is not None and error.startswith("gathering: "), error
        # Given back (or leased again and waiting): nothing folded, no turn run.
        assert [s for s, _ in await statuses(stores, user)][1:] == ["pending", "pending"]
        assert path.counters.turns == 0
        await held.commit()  # the lock goes: the retry folds the album and runs it once
        for _ in range(200):
            if [s for s, _ in await statuses(stores, user)] == ["done", "merged", "merged"]:
                break
            await asyncio.sleep(0.05)
        found = await statuses(stores, user)
        assert [s for s, _ in found] == ["done", "merged", "merged"]
        assert found[0][1] >= 2  # leased once for the failure, again for the turn
        assert path.counters.turns == 1
        session = await stores.conversations.find_active(
            bot_id="default", channel="telegram", user_id=user
        )
        assert session is not None
        history = await stores.conversations.history(session.id)
        assert [e.content for e in history if e.role == "user"] == ["our trip"]
    finally:
        await blocker.close()
        await path.stop()
