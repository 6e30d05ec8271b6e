"""API key store contract: one suite, every PostgreSQL backend (embedded, server).

A key is shown once and kept only as a hash; it verifies until it is revoked;
a wrong, malformed or unknown key grants nothing; signing keys are made once
and shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from storage.api_keys import PostgresApiKeyStore


@pytest.fixture
def keys(pg_pool: asyncpg.Pool) -> PostgresApiKeyStore:
    return PostgresApiKeyStore(pg_pool)


async def test_a_key_verifies_and_only_its_hash_is_stored(
    keys: PostgresApiKeyStore, pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    key, secret = await keys.create(bot_id=bot, role="app", name="mobile backend")
    assert secret.startswith(f"bsk_{key.id}_") and len(secret) > 50
    assert (key.bot_id, key.role, key.user_id, key.name) == (bot, "app", None, "mobile backend")

    granted = await keys.verify(secret)
    assert granted is not None and (granted.id, granted.role, granted.bot_id) == (
        key.id,
        "app",
        bot,
    )

    row = await pg_pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", key.id)
    assert row is not None
    stored = " ".join(str(v) for v in row.values())
    assert secret not in stored and secret.rpartition("_")[2] not in stored
    assert len(row["secret_sha256"]) == 32


@pytest.mark.parametrize(
    "spoil",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # one character of the secret
        lambda s: s.replace(s.split("_")[1], "0" * 16),  # an id that does not exist
        lambda s: s[:-5],  # too short
        lambda s: "bsk_nothex_" + s.split("_", 2)[2],
        lambda s: "",
        lambda s: s + "x",
    ],
    ids=["wrong-secret", "unknown-id", "truncated", "bad-id", "empty", "too-long"],
)
async def test_a_wrong_key_grants_nothing(
    keys: PostgresApiKeyStore, unique: Callable[[str], str], spoil: Callable[[str], str]
) -> None:
    _, secret = await keys.create(bot_id=unique("bot"), role="admin")
    assert await keys.verify(spoil(secret)) is None
    assert await keys.verify(secret) is not None


async def test_a_revoked_key_is_refused_at_once(
    keys: PostgresApiKeyStore, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    key, secret = await keys.create(bot_id=bot, role="agent")
    assert await keys.revoke(key.id) is True
    assert await keys.verify(secret) is None
    assert await keys.revoke(key.id) is False  # nothing left in force
    assert await keys.revoke("0" * 16) is False
    [listed] = [k for k in await keys.list_keys(bot) if k.id == key.id]
    assert listed.revoked_at is not None


async def test_listing_a_bot_shows_its_keys_and_those_of_every_bot(
    keys: PostgresApiKeyStore, unique: Callable[[str], str]
) -> None:
    bot, other = unique("bot"), unique("bot")
    own, _ = await keys.create(bot_id=bot, role="app")
    everywhere, _ = await keys.create(bot_id=None, role="admin")
    theirs, _ = await keys.create(bot_id=other, role="app")
    listed = {k.id for k in await keys.list_keys(bot)}
    assert {own.id, everywhere.id} <= listed and theirs.id not in listed
    assert {own.id, everywhere.id, theirs.id} <= {k.id for k in await keys.list_keys()}
    assert await keys.any_admin()


async def test_a_user_key_names_its_user_and_only_a_user_key_does(
    keys: PostgresApiKeyStore, unique: Callable[[str], str]
) -> None:
    key, secret = await keys.create(bot_id=unique("bot"), role="user", user_id="u-7")
    granted = await keys.verify(secret)
    assert granted is not None and granted.user_id == "u-7" == key.user_id
    with pytest.raises(ValueError):
        await keys.create(bot_id=None, role="user")
    with pytest.raises(ValueError):
        await keys.create(bot_id=None, role="app", user_id="u-7")
    with pytest.raises(ValueError):
        await keys.create(bot_id=None, role="owner")  # type: ignore[arg-type]


async def test_a_signing_key_is_made_once_for_every_caller(
    keys: PostgresApiKeyStore, pg_pool: asyncpg.Pool, unique: Callable[[str], str]
) -> None:
    name = unique("signing")
    # Instances starting together: one row, the same secret for all.
    secrets = await asyncio.gather(
        *(PostgresApiKeyStore(pg_pool).signing_key(name) for _ in range(8))
    )
    assert len(set(secrets)) == 1 and len(secrets[0]) == 32
    assert await keys.signing_key(name) == secrets[0]
    assert await keys.signing_key(unique("signing")) != secrets[0]
