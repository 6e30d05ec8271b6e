"""Typed process settings, read once from the environment and the command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class SettingsError(ValueError):
    """A setting that cannot be used as given; the process refuses to start."""


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Object storage on S3 (AWS, MinIO, any S3-compatible server), from the environment.

    ``endpoint_url`` None is AWS itself. ``public_url`` is the endpoint clients reach, for
    presigned URLs (None with an endpoint of our own: the gateway serves the files).
    """

    bucket: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    endpoint_url: str | None = None
    region: str = "us-east-1"
    public_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Settings | None:
        """``None`` when no ``S3_*`` variable asks for S3; :class:`SettingsError` naming
        every missing variable when one does but the rest is not there (never a quiet
        fallback to the disk)."""
        asked = [name for name in _S3_ASKS if env.get(name, "").strip()]
        if not asked:
            return None
        missing = [name for name in _S3_NEEDS if not env.get(name, "").strip()]
        if missing:
            raise SettingsError(
                f"object storage on S3 is asked for ({', '.join(asked)} set) but "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"
            )
        region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
        return cls(
            bucket=env["S3_BUCKET"].strip(),
            access_key_id=env["AWS_ACCESS_KEY_ID"].strip(),
            secret_access_key=env["AWS_SECRET_ACCESS_KEY"].strip(),
            endpoint_url=env.get("S3_ENDPOINT_URL", "").strip() or None,
            region=region or "us-east-1",
            public_url=env.get("S3_PUBLIC_URL", "").strip() or None,
        )


# The variables docker-compose passes: any of the first asks for S3, which needs the rest.
_S3_ASKS = ("S3_BUCKET", "S3_ENDPOINT_URL", "S3_PUBLIC_URL")
_S3_NEEDS = ("S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the process needs to start; unset services mean embedded defaults."""

    host: str = "127.0.0.1"
    port: int = 8080
    bots_dir: Path = BUNDLED_TEMPLATES
    data_dir: Path = Path(".botserver")
    database_url: str | None = None
    redis_url: str | None = None
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    # The message path: concurrent turns of the inbox worker, tries of a turn that failed
    # on our side before it is parked, and the age past which a message is dropped unread.
    workers: int = 64
    max_attempts: int = 5
    max_message_age: float = 24 * 3600.0
    # Seconds a claimed message or reply is held by an instance without news from it
    # (renewed while it works): how soon another instance takes over after a crash.
    lease: float = 60.0
    # How many conversations' last sessions an instance remembers for the next turn (see
    # storage/known_sessions.py); None: 10,000 with the embedded database, none with a
    # server, which other instances may share.
    known_sessions: int | None = None
    # The knowledge base: a Qdrant server when set, else the embedded index under data_dir;
    # whether packages' .gbkb folders are indexed as they load.
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    kb_ingest_on_load: bool = True
    # Seconds between looks for handed-off conversations whose agent went silent past
    # their bot's queue-timeout-minutes.
    handoff_sweep_interval: float = 10.0
    # Object storage: S3 when configured, else the filesystem under data_dir/blobs. Media
    # URLs the gateway serves are signed with media_secret (else a key kept in the
    # database), valid media_url_ttl seconds, absolute under public_url when set.
    s3: S3Settings | None = None
    media_secret: bytes | None = field(default=None, repr=False)
    public_url: str | None = None
    media_url_ttl: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``BOTSERVER_*``, ``DATABASE_URL``, ``REDIS_URL``, ``QDRANT_*`` and ``S3_*``
        (with ``AWS_*``) from the environment; :class:`SettingsError` for what cannot be used."""
        env = os.environ if env is None else env
        default = cls()
        return cls(
            host=env.get("BOTSERVER_HOST", default.host),
            port=int(env.get("BOTSERVER_PORT", default.port)),
            bots_dir=Path(env["BOTSERVER_BOTS"])
            if env.get("BOTSERVER_BOTS")
            else BUNDLED_TEMPLATES,
            data_dir=Path(env.get("BOTSERVER_DATA_DIR", str(default.data_dir))),
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            max_body_bytes=int(env.get("BOTSERVER_MAX_BODY_BYTES", default.max_body_bytes)),
            log_level=env.get("BOTSERVER_LOG_LEVEL", default.log_level).upper(),
            workers=int(env.get("BOTSERVER_WORKERS", default.workers)),
            max_attempts=int(env.get("BOTSERVER_MAX_ATTEMPTS", default.max_attempts)),
            max_message_age=float(env.get("BOTSERVER_MAX_MESSAGE_AGE", default.max_message_age)),
            lease=_positive(float(env.get("BOTSERVER_LEASE", default.lease)), "BOTSERVER_LEASE"),
            known_sessions=_count(env.get("BOTSERVER_KNOWN_SESSIONS"), "BOTSERVER_KNOWN_SESSIONS"),
            qdrant_url=env.get("QDRANT_URL") or None,
            qdrant_api_key=env.get("QDRANT_API_KEY") or None,
            kb_ingest_on_load=env.get("BOTSERVER_KB_INGEST", "on").strip().lower()
            not in ("0", "off", "false", "no"),
            handoff_sweep_interval=_positive(
                float(env.get("BOTSERVER_HANDOFF_SWEEP", default.handoff_sweep_interval)),
                "BOTSERVER_HANDOFF_SWEEP",
            ),
            s3=S3Settings.from_env(env),
            media_secret=_secret(env.get("BOTSERVER_MEDIA_SECRET"), "BOTSERVER_MEDIA_SECRET"),
            public_url=(env.get("BOTSERVER_PUBLIC_URL") or "").strip().rstrip("/") or None,
            media_url_ttl=int(
                _positive(
                    float(env.get("BOTSERVER_MEDIA_URL_TTL", default.media_url_ttl)),
                    "BOTSERVER_MEDIA_URL_TTL",
                )
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise SettingsError(f"{name} must be a positive number of seconds, not {value}")
    return value


def _count(value: str | None, name: str) -> int | None:
    """A count of zero or more, ``None`` when unset (the default applies)."""
    if value is None or not value.strip():
        return None
    try:
        count = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {value!r}") from None
    if count < 0:
        raise SettingsError(f"{name} must be zero or more, not {count}")
    return count


def _secret(value: str | None, name: str) -> bytes | None:
    if not value:
        return None
    if len(value.encode()) < 32:
        raise SettingsError(f"{name} must be 32 bytes or more")
    return value.encode()
