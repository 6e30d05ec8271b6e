"""A gateway on a real PostgreSQL database of its own, served in-process."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from config.settings import BUNDLED_TEMPLATES, Settings
from gateway.app import create_app
from tests.databases import temporary_database

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
    async with temporary_database(server_database_url, "botserver_gw") as url:
        yield url


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
