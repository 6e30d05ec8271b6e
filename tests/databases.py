"""A database of its own on the test PostgreSQL server, dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest


@contextlib.asynccontextmanager
async def temporary_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """Create ``{prefix}_<random>`` on the server of ``server_url``; yield its URL; drop it
    (``WITH (FORCE)``: connections a killed gateway left behind are closed too)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def database_fixture(prefix: str) -> Any:
    """A fixture that yields the URL of a database of its own for one test, named
    ``{prefix}_<random>``, and drops it after the test (and after every fixture using it)."""

    @pytest.fixture
    async def database(server_database_url: str) -> AsyncIterator[str]:
        async with temporary_database(server_database_url, prefix) as url:
            yield url

    return database
