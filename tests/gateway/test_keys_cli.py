"""``botserver keys create|list|revoke`` as an operator types them, against a real database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from storage.api_keys import PostgresApiKeyStore
from storage.postgres import create_pool
from tests.databases import temporary_database

BOTSERVER = str(Path(sys.executable).parent / "botserver")


@pytest.fixture
async def database(server_database_url: str) -> AsyncIterator[str]:
    async with temporary_database(server_database_url, "botserver_keys") as url:
        yield url


async def keys(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database}
    return await asyncio.to_thread(
        subprocess.run,
        [BOTSERVER, "keys", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


async def test_create_list_and_revoke(database: str) -> None:
    created = await keys(database, "create", "default", "--role", "admin", "--name", "ops")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("bsk_") and "\n" not in key  # the key alone, for scripts
    key_id = key.split("_")[1]
    assert f"created key {key_id}: role admin, bot default" in created.stderr
    assert "shown only this once" in created.stderr

    everywhere = await keys(database, "create", "--all-bots", "--role", "app")
    assert everywhere.returncode == 0, everywhere.stderr
    user = await keys(database, "create", "default", "--role", "user", "--user", "u-1")
    assert user.returncode == 0, user.stderr

    listed = await keys(database, "list", "default")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t") == ["id", "bot", "role", "user", "name", "created", "revoked"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows[key_id][1:5] == ["default", "admin", "-", "ops"] and rows[key_id][6] == "-"
    assert {r[1] for r in rows.values()} == {"default", "*"} and len(rows) == 3
    assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout

    pool = await create_pool(database)
    try:
        store = PostgresApiKeyStore(pool)
        granted = await store.verify(key)
        assert granted is not None and granted.role == "admin" and granted.bot_id == "default"
        stored = await pool.fetch("SELECT * FROM api_keys")
        assert not any(key in str(dict(r)) for r in stored)

        revoked = await keys(database, "revoke", key_id)
        assert revoked.returncode == 0 and f"revoked key {key_id}" in revoked.stdout
        assert await store.verify(key) is None
        again = await keys(database, "revoke", key_id)
        assert again.returncode == 1 and "no key" in again.stderr
        listed = await keys(database, "list")
        [line] = [line for line in listed.stdout.splitlines() if line.startswith(key_id)]
        assert line.split("\t")[6] != "-"  # revoked, with its time
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["create", "nobody", "--role", "app"], 1, "no bot 'nobody'"),
        (["create", "default", "--role", "owner"], 2, "invalid choice"),
        (["create", "default", "--role", "user"], 2, "--user"),
        (["create", "default", "--role", "app", "--user", "u"], 2, "--user"),
        (["create", "--role", "app"], 2, "--all-bots"),
    ],
)
async def test_bad_arguments_are_refused(
    database: str, args: list[str], code: int, says: str
) -> None:
    result = await keys(database, *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stderr
    assert result.stdout == ""
    conn = await asyncpg.connect(database)
    try:
        exists = await conn.fetchval("SELECT to_regclass('api_keys') IS NOT NULL")
        count = await conn.fetchval("SELECT count(*) FROM api_keys") if exists else 0
    finally:
        await conn.close()
    assert count == 0
