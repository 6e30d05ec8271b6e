"""Ordering per conversation, concurrency across conversations, one error boundary per turn."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from channels.base import InboundMessage, OutboundMessage
from config.settings import BUNDLED_TEMPLATES, Settings
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher, default_stages
from pipeline.errors import TurnFailed, UnknownBot
from pipeline.services import Services
from pipeline.turn import Next, Stage, Turn
from storage.services import Stores, open_stores


class Recorder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def delta(self, text: str) -> None:
        self.texts.append(text)

    async def message(self, message: OutboundMessage) -> None:
        self.texts.append(message.text)


def message(conversation: str, text: str) -> InboundMessage:
    return InboundMessage(
        channel="test",
        bot="default",
        conversation=conversation,
        sender=conversation,
        external_id=uuid.uuid4().hex,
        text=text,
    )


@pytest.fixture(params=["in-process", "redis"])
async def stores(
    request: pytest.FixtureRequest, server_database_url: str, tmp_path: Path
) -> AsyncIterator[Stores]:
    """Stores on the PostgreSQL server, with in-process or Redis locks ordering the turns."""
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = Settings(
        data_dir=tmp_path,
        database_url=server_database_url,
        redis_url=redis_url if request.param == "redis" else None,
    )
    opened = await open_stores(settings, redis_prefix=f"test:{uuid.uuid4().hex[:8]}:")
    yield opened
    await opened.close()


@pytest.fixture
async def registry() -> BotRegistry:
    bots = BotRegistry(BUNDLED_TEMPLATES)
    await bots.load_all()
    return bots


def dispatcher_with(registry: BotRegistry, stores: Stores, extra: list[Stage]) -> Dispatcher:
    services = Services(conversations=stores.conversations, locks=stores.locks)
    return Dispatcher(registry, services, stages=[*extra, *default_stages()])


async def test_one_conversation_in_order_others_concurrently(
    registry: BotRegistry, stores: Stores
) -> None:
    gate = asyncio.Event()
    log: list[str] = []

    async def gated(turn: Turn, next_: Next) -> None:
        log.append(f"start {turn.message.conversation} {turn.text}")
        if turn.text == "wait":
            await gate.wait()
        await next_(turn)
        log.append(f"end {turn.message.conversation} {turn.text}")

    dispatcher = dispatcher_with(registry, stores, [gated])
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    first = asyncio.create_task(dispatcher.handle(message(a, "wait"), Recorder()))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(dispatcher.handle(message(a, "ada"), Recorder()))
    await asyncio.sleep(0.05)
    await dispatcher.handle(message(b, "hi"), Recorder())  # another conversation is not held up
    assert log == [f"start {a} wait", f"start {b} hi", f"end {b} hi"]
    assert not second.done()
    gate.set()
    await first
    turn = await second
    assert log[3:] == [f"end {a} wait", f"start {a} ada", f"end {a} ada"]
    assert turn.history[-2].content == "Nice to meet you, Ada!"


async def test_a_failing_turn_is_contained(registry: BotRegistry, stores: Stores) -> None:
    async def explode(turn: Turn, next_: Next) -> None:
        if turn.text == "boom":
            raise RuntimeError("stage failure")
        await next_(turn)

    dispatcher = dispatcher_with(registry, stores, [explode])
    user = f"c-{uuid.uuid4().hex[:6]}"
    with pytest.raises(TurnFailed) as failure:
        await dispatcher.handle(message(user, "boom"), Recorder())
    assert isinstance(failure.value.__cause__, RuntimeError)
    sink = Recorder()
    await dispatcher.handle(message(user, "hi"), sink)  # the conversation's lock was released
    assert sink.texts == ["Hello! I am the botserver assistant. What is your name?"]


async def test_unknown_bot(registry: BotRegistry, stores: Stores) -> None:
    dispatcher = dispatcher_with(registry, stores, [])
    msg = InboundMessage(
        channel="test", bot="ghost", conversation="x", sender="x", external_id="1", text="hi"
    )
    with pytest.raises(UnknownBot):
        await dispatcher.handle(msg, Recorder())
