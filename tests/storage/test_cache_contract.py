"""Cache contract: one suite, every backend (in-process, Redis)."""

from __future__ import annotations

import asyncio

from storage.base import Cache


async def test_missing_key_is_none(cache: Cache) -> None:
    assert await cache.get("missing") is None


async def test_set_get_overwrite_delete(cache: Cache) -> None:
    await cache.set("k", b"one")
    assert await cache.get("k") == b"one"
    await cache.set("k", b"two")
    assert await cache.get("k") == b"two"
    await cache.delete("k")
    assert await cache.get("k") is None
    await cache.delete("k")  # deleting what is not there is fine


async def test_values_are_opaque_bytes(cache: Cache) -> None:
    value = bytes(range(256)) + "olá 🤖".encode()
    await cache.set("binary", value)
    assert await cache.get("binary") == value


async def test_keys_are_distinct(cache: Cache) -> None:
    await cache.set("bot-a:x", b"a")
    await cache.set("bot-b:x", b"b")
    assert await cache.get("bot-a:x") == b"a"
    assert await cache.get("bot-b:x") == b"b"


async def test_entries_expire_after_their_ttl(cache: Cache) -> None:
    await cache.set("short", b"v", ttl=0.15)
    await cache.set("forever", b"v")
    assert await cache.get("short") == b"v"
    await asyncio.sleep(0.3)
    assert await cache.get("short") is None
    assert await cache.get("forever") == b"v"


async def test_setting_again_without_ttl_makes_an_entry_permanent(cache: Cache) -> None:
    await cache.set("k", b"v1", ttl=0.15)
    await cache.set("k", b"v2")
    await asyncio.sleep(0.3)
    assert await cache.get("k") == b"v2"


async def test_setting_again_with_a_longer_ttl_extends_it(cache: Cache) -> None:
    await cache.set("k", b"v1", ttl=0.1)
    await cache.set("k", b"v2", ttl=5)
    await asyncio.sleep(0.25)
    assert await cache.get("k") == b"v2"
