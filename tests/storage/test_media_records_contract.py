"""MediaRecords contract: which attachments are stored, on every PostgreSQL backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import asyncpg
import pytest

from storage.base import MediaRecord, MediaRecords
from storage.media_records import PostgresMediaRecords


@pytest.fixture
def records(pg_pool: asyncpg.Pool) -> MediaRecords:
    return PostgresMediaRecords(pg_pool)


def record(bot: str, message: str, position: int = 0, **more: object) -> MediaRecord:
    values: dict[str, object] = {
        "bot_id": bot,
        "channel": "telegram",
        "message_id": message,
        "position": position,
        "user_id": "424242",
        "kind": "image",
        "key": f"{bot}/users/424242@telegram/inbox/{message}/{position}-photo.jpg",
        "content_type": "image/jpeg",
        "size": 1234,
        "sha256": "0f" * 32,
        "filename": "photo.jpg",
    } | more
    return MediaRecord(**values)  # type: ignore[arg-type]


async def test_a_stored_attachment_is_found_by_its_message(
    records: MediaRecords, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    assert await records.find(bot, "telegram", "17") == []
    second = await records.add(record(bot, "17", 1, kind="document", filename=None))
    first = await records.add(record(bot, "17", 0))
    assert first.created_at is not None
    found = await records.find(bot, "telegram", "17")
    assert [r.position for r in found] == [0, 1]
    assert found == [first, second]
    assert await records.find(bot, "whatsapp", "17") == []  # another channel's message 17
    assert await records.find(unique("bot"), "telegram", "17") == []  # another bot's


async def test_the_first_record_of_a_position_wins(
    records: MediaRecords, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    kept = await records.add(record(bot, "m1"))
    again = await records.add(replace(record(bot, "m1"), sha256="aa" * 32, size=99))
    assert again == kept
    racing = await asyncio.gather(*(records.add(record(bot, "m2", 0)) for _ in range(5)))
    assert len({r.created_at for r in racing}) == 1


async def test_a_users_files_are_listed_oldest_first(
    records: MediaRecords, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    for n in range(3):
        await records.add(record(bot, f"m{n}"))
    await records.add(record(bot, "other", user_id="999"))
    mine = await records.of_user(bot, "telegram", "424242")
    assert [r.message_id for r in mine] == ["m0", "m1", "m2"]
    assert len(await records.of_user(bot, "telegram", "424242", limit=2)) == 2
