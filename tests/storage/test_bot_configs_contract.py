"""BotConfigStore contract: one suite, every PostgreSQL backend (embedded, server)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pytest

from storage.base import BotConfigStore
from storage.postgres import PostgresBotConfigStore


@pytest.fixture
def store(pg_pool: asyncpg.Pool) -> BotConfigStore:
    return PostgresBotConfigStore(pg_pool)


async def test_unknown_bot_has_no_config(
    store: BotConfigStore, unique: Callable[[str], str]
) -> None:
    assert await store.get(unique("bot")) is None


async def test_put_then_get_round_trips_json(
    store: BotConfigStore, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    config = {
        "theme-color1": "#0d2b55",
        "params": {"company": "Ação Ltda", "max": 3, "flags": [True, None, 1.5]},
    }
    await store.put(bot, config)
    assert await store.get(bot) == config


async def test_put_replaces_the_whole_config(
    store: BotConfigStore, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    await store.put(bot, {"a": 1, "b": 2})
    await store.put(bot, {"c": 3})
    assert await store.get(bot) == {"c": 3}


async def test_configs_are_scoped_by_bot(
    store: BotConfigStore, unique: Callable[[str], str]
) -> None:
    one, two = unique("bot"), unique("bot")
    await store.put(one, {"name": "one"})
    await store.put(two, {"name": "two"})
    assert await store.get(one) == {"name": "one"}
    assert await store.get(two) == {"name": "two"}
