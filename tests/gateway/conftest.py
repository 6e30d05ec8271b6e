"""A gateway on a real PostgreSQL database of its own, served in-process.

``client`` calls it as an ``app`` (an HS256 JWT with the app role: a backend
naming the user of each message in the body), ``anonymous`` with no
credential at all; ``ADMIN_TOKEN`` is the admin token of both.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from config.settings import BUNDLED_TEMPLATES, Settings
from gateway.app import create_app
from gateway.auth import AuthConfig
from gateway.auth_jwt import JwtSettings
from tests.databases import temporary_database
from tests.gateway.credentials import ADMIN_TOKEN, AUDIENCE, ISSUER, JWT_SECRET, bearer, hs256_token

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
def auth_config() -> AuthConfig:
    return AuthConfig(
        admin_token=ADMIN_TOKEN,
        jwt=JwtSettings(secret=JWT_SECRET, issuer=ISSUER, audience=AUDIENCE),
    )


@pytest.fixture
async def client(aiohttp_client, settings: Settings, auth_config: AuthConfig) -> TestClient:  # type: ignore[no-untyped-def]
    app = create_app(settings, auth=auth_config)
    return await aiohttp_client(app, headers=bearer(hs256_token(roles=["app"])))


@pytest.fixture
async def anonymous(aiohttp_client, settings: Settings, auth_config: AuthConfig) -> TestClient:  # type: ignore[no-untyped-def]
    """A gateway called with no credential unless a request brings its own."""
    return await aiohttp_client(create_app(settings, auth=auth_config))
