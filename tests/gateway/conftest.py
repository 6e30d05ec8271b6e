"""A gateway on a real PostgreSQL database of its own, served in-process."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from config.settings import BUNDLED_TEMPLATES, Settings
from gateway.app import create_app

TEST_BOTS = Path(__file__).resolve().parent.parent / "bots"


@pytest.fixture(scope="session")
def bots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled bots plus the test bots, in one folder."""
    folder = tmp_path_factory.mktemp("bots")
    for package in [*BUNDLED_TEMPLATES.glob("*.gbai"), *TEST_BOTS.glob("*.gbai")]:
        shutil.copytree(package, folder / package.name)
    return folder


@pytest.fixture(scope="session")
async def gateway_database(server_database_url: str) -> AsyncIterator[str]:
    """A fresh database on the PostgreSQL server, dropped after the session."""
    name = f"botserver_gw_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = server_database_url.rpartition("/")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(bots_dir: Path, gateway_database: str, tmp_path: Path) -> Settings:
    return Settings(
        bots_dir=bots_dir,
        data_dir=tmp_path,
        database_url=gateway_database,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
async def client(aiohttp_client, settings: Settings) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(settings))
