"""MemoryStore contract: one suite, every PostgreSQL backend (embedded, server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from storage.base import MemoryStore
from storage.postgres import PostgresMemoryStore


@pytest.fixture
def store(pg_pool: asyncpg.Pool) -> MemoryStore:
    return PostgresMemoryStore(pg_pool)


@pytest.fixture
def bot(unique: Callable[[str], str]) -> str:
    return unique("bot")


@pytest.mark.parametrize("user_id", [None, "user-1"])
async def test_a_key_never_set_reads_as_none(
    store: MemoryStore, bot: str, user_id: str | None
) -> None:
    assert await store.get(bot, "last_reminder", user_id=user_id) is None


@pytest.mark.parametrize(
    "value",
    [
        "reminder-42",
        "",
        0,
        -3,
        2.5,
        True,
        False,
        [],
        ["a", 1, None, {"b": [2]}],
        {},
        {"name": "Zoë", "count": 3, "tags": ["x", "y"], "nested": {"ok": True, "n": None}},
        "emoji 🤖 and quotes \" ' \\",
    ],
    ids=repr,
)
@pytest.mark.parametrize("user_id", [None, "user-1"])
async def test_json_values_round_trip(
    store: MemoryStore, bot: str, user_id: str | None, value: Any
) -> None:
    await store.set(bot, "k", value, user_id=user_id)
    got = await store.get(bot, "k", user_id=user_id)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize("user_id", [None, "user-1"])
async def test_set_overwrites(store: MemoryStore, bot: str, user_id: str | None) -> None:
    await store.set(bot, "k", {"v": 1}, user_id=user_id)
    await store.set(bot, "k", [2], user_id=user_id)
    assert await store.get(bot, "k", user_id=user_id) == [2]


@pytest.mark.parametrize("user_id", [None, "user-1"])
async def test_setting_none_forgets_the_key(
    store: MemoryStore, bot: str, user_id: str | None
) -> None:
    await store.set(bot, "k", "v", user_id=user_id)
    await store.set(bot, "k", None, user_id=user_id)
    assert await store.get(bot, "k", user_id=user_id) is None


async def test_keys_are_distinct_and_case_sensitive(store: MemoryStore, bot: str) -> None:
    await store.set(bot, "Name", "upper")
    await store.set(bot, "name", "lower")
    assert (await store.get(bot, "Name"), await store.get(bot, "name")) == ("upper", "lower")


async def test_bot_memory_is_scoped_by_bot(
    store: MemoryStore, unique: Callable[[str], str]
) -> None:
    one, two = unique("bot"), unique("bot")
    await store.set(one, "greeting", "hello from one")
    assert await store.get(two, "greeting") is None
    await store.set(two, "greeting", "hello from two")
    assert await store.get(one, "greeting") == "hello from one"
    assert await store.get(two, "greeting") == "hello from two"


async def test_user_memory_is_scoped_by_user_and_apart_from_bot_memory(
    store: MemoryStore, bot: str
) -> None:
    await store.set(bot, "color", "bot-wide")
    await store.set(bot, "color", "blue", user_id="alice")
    await store.set(bot, "color", "green", user_id="bob")

    assert await store.get(bot, "color") == "bot-wide"
    assert await store.get(bot, "color", user_id="alice") == "blue"
    assert await store.get(bot, "color", user_id="bob") == "green"
    assert await store.get(bot, "color", user_id="carol") is None

    await store.set(bot, "color", None, user_id="alice")
    assert await store.get(bot, "color") == "bot-wide"
    assert await store.get(bot, "color", user_id="bob") == "green"


async def test_user_memory_is_scoped_by_bot(
    store: MemoryStore, unique: Callable[[str], str]
) -> None:
    one, two = unique("bot"), unique("bot")
    await store.set(one, "plan", "gold", user_id="alice")
    assert await store.get(two, "plan", user_id="alice") is None


async def test_an_empty_user_id_is_refused(store: MemoryStore, bot: str) -> None:
    # '' would alias the bot's own memory.
    with pytest.raises(ValueError, match="user_id"):
        await store.set(bot, "k", 1, user_id="")
    with pytest.raises(ValueError, match="user_id"):
        await store.get(bot, "k", user_id="")
