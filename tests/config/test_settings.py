"""Process settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import BUNDLED_TEMPLATES, S3Settings, Settings, SettingsError


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


COMPOSE_S3 = {  # what docker-compose.yml passes
    "S3_ENDPOINT_URL": "http://minio:9000",
    "S3_BUCKET": "botserver",
    "AWS_ACCESS_KEY_ID": "botserver",
    "AWS_SECRET_ACCESS_KEY": "botserver-secret",
}


def test_no_s3_variable_means_files_on_disk() -> None:
    assert Settings.from_env({}).s3 is None


def test_composes_s3_variables_are_read() -> None:
    s3 = Settings.from_env(COMPOSE_S3 | {"AWS_REGION": "eu-west-1"}).s3
    assert s3 == S3Settings(
        bucket="botserver",
        access_key_id="botserver",
        secret_access_key="botserver-secret",
        endpoint_url="http://minio:9000",
        region="eu-west-1",
    )
    assert "botserver-secret" not in repr(s3)
    assert not s3.public_url


@pytest.mark.parametrize(
    ("dropped", "named"),
    [
        (("AWS_SECRET_ACCESS_KEY",), "AWS_SECRET_ACCESS_KEY is not set"),
        (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "AWS_ACCESS_KEY_ID, AWS_SECRET_ACC"),
        (("S3_BUCKET",), "S3_BUCKET is not set"),
    ],
)
def test_s3_asked_for_without_what_it_needs_is_a_startup_error(
    dropped: tuple[str, ...], named: str
) -> None:
    env = {k: v for k, v in COMPOSE_S3.items() if k not in dropped}
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_media_settings_are_read_and_a_short_secret_refused() -> None:
    settings = Settings.from_env(
        {
            "BOTSERVER_MEDIA_SECRET": "m" * 32,
            "BOTSERVER_PUBLIC_URL": "https://bots.example.com/",
            "BOTSERVER_MEDIA_URL_TTL": "600",
        }
    )
    assert (settings.media_secret, settings.public_url, settings.media_url_ttl) == (
        b"m" * 32,
        "https://bots.example.com",
        600,
    )
    assert "m" * 32 not in repr(settings)
    with pytest.raises(SettingsError, match="32 bytes"):
        Settings.from_env({"BOTSERVER_MEDIA_SECRET": "short"})


def test_known_sessions_default_by_database_or_as_set() -> None:
    assert Settings.from_env({}).known_sessions is None  # by the database (storage.services)
    assert Settings.from_env({"BOTSERVER_KNOWN_SESSIONS": "0"}).known_sessions == 0
    assert Settings.from_env({"BOTSERVER_KNOWN_SESSIONS": "500"}).known_sessions == 500
    for bad in ("-1", "many"):
        with pytest.raises(SettingsError, match="BOTSERVER_KNOWN_SESSIONS"):
            Settings.from_env({"BOTSERVER_KNOWN_SESSIONS": bad})
