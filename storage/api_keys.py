"""API keys of the web API, and the gateway's signing keys, on PostgreSQL.

A key reads ``bsk_<id>_<secret>``: the id finds its row, and the row holds
only the SHA-256 of the whole key, compared in constant time. The key itself
is returned once, by :meth:`ApiKeyStore.create`, and kept nowhere: a copy of
the database (or of its logs) grants nothing. The secret is 256 random bits,
so a fast hash is enough; there is nothing to guess.

A key is scoped to one bot, or to every bot (``bot_id`` None), and carries
one role. A ``user`` key acts as one user, named at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, cast

import asyncpg

from storage.postgres import translate_errors

Role = Literal["admin", "agent", "app", "user"]
ROLES: tuple[Role, ...] = ("admin", "agent", "app", "user")

KEY_PREFIX = "bsk_"
_KEY = re.compile(r"^bsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# Compared against when a key's id is unknown, so that case costs the same hash and compare.
_NO_HASH = hashlib.sha256(b"no such key").digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What a key grants; never its secret."""

    id: str
    bot_id: str | None
    role: Role
    user_id: str | None
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


def is_api_key(token: str) -> bool:
    """Whether ``token`` has the shape of one of our API keys (says nothing of its validity)."""
    return token.startswith(KEY_PREFIX)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeyStore(Protocol):
    """API keys, hashed at rest, and the gateway's named signing keys."""

    async def create(
        self, *, bot_id: str | None, role: Role, user_id: str | None = None, name: str = ""
    ) -> tuple[ApiKey, str]:
        """A new key; the second value is the key itself, shown once and stored nowhere."""
        ...

    async def verify(self, key: str) -> ApiKey | None:
        """The key's grant, or None when it is malformed, unknown, wrong or revoked."""
        ...

    async def list_keys(self, bot_id: str | None = None) -> list[ApiKey]:
        """Keys of ``bot_id`` (and those of every bot), or all keys; revoked ones included."""
        ...

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key at once; False when there is no such key still in force."""
        ...

    async def any_admin(self) -> bool:
        """Whether some admin key is in force (admin is not disabled)."""
        ...

    async def signing_key(self, name: str) -> bytes:
        """The 32-byte secret called ``name``, made on first use; the same on every instance."""
        ...


_COLUMNS = "id, bot_id, role, user_id, name, created_at, revoked_at"


def _row(record: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=record["id"],
        bot_id=record["bot_id"],
        role=cast(Role, record["role"]),
        user_id=record["user_id"],
        name=record["name"],
        created_at=record["created_at"],
        revoked_at=record["revoked_at"],
    )


class PostgresApiKeyStore:
    """:class:`ApiKeyStore` on the ``api_keys`` and ``gateway_signing_keys`` tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, *, bot_id: str | None, role: Role, user_id: str | None = None, name: str = ""
    ) -> tuple[ApiKey, str]:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if (role == "user") != (user_id is not None):
            raise ValueError("a user key names its user, and only a user key does")
        key_id = secrets.token_hex(8)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        with translate_errors:
            record = await self._pool.fetchrow(
                f"INSERT INTO api_keys (id, bot_id, role, user_id, name, secret_sha256)"
                f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
                key_id,
                bot_id,
                role,
                user_id,
                name,
                _digest(key),
            )
        assert record is not None
        return _row(record), key

    async def verify(self, key: str) -> ApiKey | None:
        match = _KEY.match(key)
        if match is None:
            return None
        with translate_errors:
            record = await self._pool.fetchrow(
                f"SELECT {_COLUMNS}, secret_sha256 FROM api_keys WHERE id = $1", match.group(1)
            )
        stored = bytes(record["secret_sha256"]) if record is not None else _NO_HASH
        if not hmac.compare_digest(stored, _digest(key)) or record is None:
            return None
        if record["revoked_at"] is not None:
            return None
        return _row(record)

    async def list_keys(self, bot_id: str | None = None) -> list[ApiKey]:
        with translate_errors:
            if bot_id is None:
                rows = await self._pool.fetch(
                    f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id"
                )
            else:
                rows = await self._pool.fetch(
                    f"SELECT {_COLUMNS} FROM api_keys WHERE bot_id = $1 OR bot_id IS NULL"
                    " ORDER BY created_at, id",
                    bot_id,
                )
        return [_row(r) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        with translate_errors:
            status = await self._pool.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                key_id,
            )
        return bool(status == "UPDATE 1")

    async def any_admin(self) -> bool:
        with translate_errors:
            found = await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL)"
            )
        return bool(found)

    async def signing_key(self, name: str) -> bytes:
        with translate_errors:
            # Instances starting together insert at most one row; every one reads it back.
            await self._pool.execute(
                "INSERT INTO gateway_signing_keys (name, secret) VALUES ($1, $2)"
                " ON CONFLICT (name) DO NOTHING",
                name,
                secrets.token_bytes(32),
            )
            secret = await self._pool.fetchval(
                "SELECT secret FROM gateway_signing_keys WHERE name = $1", name
            )
        return bytes(secret)
