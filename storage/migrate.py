"""Versioned schema migrations for the PostgreSQL stores.

Migrations are the numbered files ``storage/migrations/NNNN_name.sql``,
applied in version order, each in its own transaction together with its row
in ``schema_migrations``. Every transaction first takes a transaction-scoped
advisory lock keyed by the current schema, so instances starting together
apply each migration exactly once; a migration already recorded is skipped,
which makes :func:`migrate` idempotent.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

from storage.base import StorageError

_FILE_NAME = re.compile(r"^(\d+)_([a-z0-9_]+)\.sql$")

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('botserver.migrate:' || current_schema()))"

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


class MigrationError(StorageError):
    """The migration files are inconsistent or one of them failed to apply."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: ``name`` is the file name without ``.sql``, e.g. ``0001_core``."""

    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in ``storage/migrations``, in version order."""
    folder = resources.files("storage") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(
            Migration(
                int(match.group(1)), entry.name.removesuffix(".sql"), entry.read_text("utf-8")
            )
        )
    return _checked(found)


def _checked(migrations: Sequence[Migration]) -> list[Migration]:
    ordered = sorted(migrations, key=lambda m: m.version)
    for previous, current in itertools.pairwise(ordered):
        if previous.version == current.version:
            raise MigrationError(
                f"migrations {previous.name} and {current.name} share version {current.version}"
            )
    return ordered


async def migrate(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    migrations: Sequence[Migration] | None = None,
) -> list[str]:
    """Apply the pending migrations to the connection's current schema.

    Returns the names of the migrations this call applied (empty when the
    schema was already up to date). ``migrations`` defaults to the bundled ones.
    """
    pending = _checked(bundled_migrations() if migrations is None else migrations)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _migrate(conn, pending)
    return await _migrate(db, pending)


async def applied_versions(conn: Any) -> dict[int, str]:
    """The versions recorded in ``schema_migrations`` (empty when it does not exist yet)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name FROM schema_migrations")
    return {row["version"]: row["name"] for row in rows}


async def _migrate(conn: Any, migrations: list[Migration]) -> list[str]:
    async with conn.transaction():
        await conn.execute(_LOCK)
        await conn.execute(_CREATE_TABLE)
        done = await applied_versions(conn)
    applied: list[str] = []
    for migration in migrations:
        if migration.version in done:
            continue
        try:
            async with conn.transaction():
                await conn.execute(_LOCK)
                # Another instance may have applied it while we waited for the lock.
                if await conn.fetchval(
                    "SELECT 1 FROM schema_migrations WHERE version = $1", migration.version
                ):
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        except asyncpg.PostgresError as e:
            raise MigrationError(f"migration {migration.name} failed: {e}") from e
        applied.append(migration.name)
    return applied
