"""Typed process settings, read once from the environment and the command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


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
    # The knowledge base: a Qdrant server when set, else the embedded index under data_dir;
    # whether packages' .gbkb folders are indexed as they load.
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    kb_ingest_on_load: bool = True
    # Seconds between looks for handed-off conversations whose agent went silent past
    # their bot's queue-timeout-minutes.
    handoff_sweep_interval: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``BOTSERVER_*``, ``DATABASE_URL`` and ``REDIS_URL`` from the environment."""
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
            qdrant_url=env.get("QDRANT_URL") or None,
            qdrant_api_key=env.get("QDRANT_API_KEY") or None,
            kb_ingest_on_load=env.get("BOTSERVER_KB_INGEST", "on").strip().lower()
            not in ("0", "off", "false", "no"),
            handoff_sweep_interval=_positive(
                float(env.get("BOTSERVER_HANDOFF_SWEEP", default.handoff_sweep_interval)),
                "BOTSERVER_HANDOFF_SWEEP",
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value}")
    return value
