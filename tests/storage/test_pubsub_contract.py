"""PubSub contract: one suite, every backend (in-process, Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from storage.base import PubSub


async def take(messages: AsyncIterator[bytes], n: int) -> list[bytes]:
    async with asyncio.timeout(5):
        return [await anext(messages) for _ in range(n)]


async def test_every_subscriber_gets_every_message_in_order(pubsub: PubSub) -> None:
    async with (
        pubsub.subscribe("bot-a:events") as first,
        pubsub.subscribe("bot-a:events") as second,
    ):
        for n in range(3):
            await pubsub.publish("bot-a:events", f"m{n}".encode())

        assert await take(first, 3) == [b"m0", b"m1", b"m2"]
        assert await take(second, 3) == [b"m0", b"m1", b"m2"]


async def test_subscribers_only_get_their_channel(pubsub: PubSub) -> None:
    async with pubsub.subscribe("one") as one, pubsub.subscribe("two") as two:
        await pubsub.publish("two", b"for two")
        await pubsub.publish("one", b"for one")

        assert await take(one, 1) == [b"for one"]
        assert await take(two, 1) == [b"for two"]


async def test_nothing_arrives_after_leaving_or_before_subscribing(pubsub: PubSub) -> None:
    await pubsub.publish("ch", b"before anyone listened")
    async with pubsub.subscribe("ch") as messages:
        await pubsub.publish("ch", b"during")
        assert await take(messages, 1) == [b"during"]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await anext(messages)
    await pubsub.publish("ch", b"after everyone left")  # no subscriber: not an error


async def test_publishing_without_subscribers_is_fine(pubsub: PubSub) -> None:
    await pubsub.publish("nobody-listens", b"x")
