"""Process settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import BUNDLED_TEMPLATES, Settings


def test_nothing_set_means_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.bots_dir == BUNDLED_TEMPLATES
    assert (settings.database_url, settings.redis_url) == (None, None)


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "BOTSERVER_HOST": "0.0.0.0",
            "BOTSERVER_PORT": "9000",
            "BOTSERVER_BOTS": "/srv/bots",
            "BOTSERVER_DATA_DIR": "/var/lib/botserver",
            "DATABASE_URL": "postgresql://db/bots",
            "REDIS_URL": "redis://cache:6379",
            "BOTSERVER_MAX_BODY_BYTES": "2048",
            "BOTSERVER_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        host="0.0.0.0",
        port=9000,
        bots_dir=Path("/srv/bots"),
        data_dir=Path("/var/lib/botserver"),
        database_url="postgresql://db/bots",
        redis_url="redis://cache:6379",
        max_body_bytes=2048,
        log_level="DEBUG",
    )


def test_a_number_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"BOTSERVER_PORT": "eighty"})
