"""Versioned migrations, on every PostgreSQL backend (embedded, server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from storage.migrate import Migration, MigrationError, bundled_migrations, migrate
from storage.postgres import quote_ident

EXPECTED_TABLES = {
    "user_sessions",
    "message_history",
    "bot_configs",
    "kb_documents",
    "bot_memory",
    "bot_table_rows",
    "bot_table_seeds",
}


async def tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    return {r["table_name"] for r in rows}


async def test_bundled_migrations_are_numbered_and_ordered() -> None:
    migrations = bundled_migrations()
    assert [m.name for m in migrations[:2]] == ["0001_core", "0002_memory_and_tables"]
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))


async def test_migrate_creates_the_schema_once(fresh_schema: asyncpg.Connection) -> None:
    assert await migrate(fresh_schema) == [m.name for m in bundled_migrations()]
    assert await tables(fresh_schema) >= EXPECTED_TABLES | {"schema_migrations"}
    indexes = {
        r["indexname"]
        for r in await fresh_schema.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
    }
    assert indexes >= {
        "idx_sessions_user",
        "idx_sessions_bot",
        "idx_messages_session",
        "idx_kb_collection",
        "idx_table_rows",
    }

    assert await migrate(fresh_schema) == []  # idempotent
    rows = await fresh_schema.fetch("SELECT version, name, applied_at FROM schema_migrations")
    assert [(r["version"], r["name"]) for r in rows] == [
        (m.version, m.name) for m in bundled_migrations()
    ]
    assert all(r["applied_at"] is not None for r in rows)


async def test_a_session_save_is_a_heap_only_update(fresh_schema: asyncpg.Connection) -> None:
    # What every turn does to its session: new state, new updated_at. No index
    # may cover those columns, and pages keep room for the new row version.
    await migrate(fresh_schema)
    await fresh_schema.execute(
        "INSERT INTO user_sessions (bot_id, channel, user_id) "
        "SELECT 'bot', 'web', 'user' || n FROM generate_series(1, 500) AS n"
    )
    counts = (
        "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_xact_user_tables"
        " WHERE relid = 'user_sessions'::regclass"
    )
    async with fresh_schema.transaction():
        hot_before, updated_before = await fresh_schema.fetchrow(counts)
        await fresh_schema.execute(
            "UPDATE user_sessions SET metadata = jsonb_build_object('pc', 7),"
            " updated_at = clock_timestamp()"
        )
        hot, updated = await fresh_schema.fetchrow(counts)
    assert updated - updated_before == 500
    # The rows whose new version fits in the room fillfactor left on their page
    # (~1 in 4 here; later saves find more, once old versions are pruned). With
    # pages packed full or updated_at indexed: 0.
    assert hot - hot_before >= 100


async def test_only_pending_migrations_run_in_version_order(
    fresh_schema: asyncpg.Connection,
) -> None:
    base = bundled_migrations()
    await migrate(fresh_schema, migrations=base)
    later = [
        Migration(9003, "9003_fill", "INSERT INTO extra (step) VALUES ('9003')"),
        Migration(9002, "9002_extra", "CREATE TABLE extra (step TEXT)"),
    ]

    assert await migrate(fresh_schema, migrations=[*base, *later]) == ["9002_extra", "9003_fill"]
    assert await fresh_schema.fetchval("SELECT string_agg(step, ',') FROM extra") == "9003"
    assert await migrate(fresh_schema, migrations=[*base, *later]) == []


async def test_a_failing_migration_leaves_nothing_behind(
    fresh_schema: asyncpg.Connection,
) -> None:
    broken = Migration(1, "0001_broken", "CREATE TABLE half (x INT); SELECT no_such_function()")
    with pytest.raises(MigrationError, match="0001_broken"):
        await migrate(fresh_schema, migrations=[broken])

    assert await tables(fresh_schema) == {"schema_migrations"}
    assert await fresh_schema.fetchval("SELECT count(*) FROM schema_migrations") == 0


async def test_duplicate_versions_are_refused(fresh_schema: asyncpg.Connection) -> None:
    with pytest.raises(MigrationError, match="share version"):
        await migrate(
            fresh_schema,
            migrations=[Migration(5, "0005_a", "SELECT 1"), Migration(5, "0005_b", "SELECT 1")],
        )


async def test_concurrent_instances_apply_each_migration_once(
    pg_dsn: str, pg_schema: Callable[[str], str]
) -> None:
    schema = quote_ident(pg_schema("race"))
    conns = [await asyncpg.connect(pg_dsn) for _ in range(4)]
    try:
        await conns[0].execute(f"CREATE SCHEMA {schema}")
        for conn in conns:
            await conn.execute(f"SET search_path TO {schema}")

        results = await asyncio.gather(*(migrate(conn) for conn in conns))

        applied = [name for result in results for name in result]
        assert sorted(applied) == sorted(m.name for m in bundled_migrations())
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(
            bundled_migrations()
        )
    finally:
        for conn in conns:
            await conn.close()
