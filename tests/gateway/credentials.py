"""The credentials the test gateways accept: an admin token and HS256 JWTs of a test issuer."""

from __future__ import annotations

import time
from typing import Any

import jwt

JWT_SECRET = b"gateway-tests-hs256-secret-of-32-bytes-or-more"
ISSUER = "https://issuer.botserver.test"
AUDIENCE = "botserver-tests"
ADMIN_TOKEN = "gateway-tests-admin-token"
# Modules make their tokens when imported, at collection: they must outlive a whole run of
# the suite on a loaded machine (a 10-minute life expired before the tests using it ran).
LIFETIME = 6 * 3600


def hs256_token(*, sub: str = "test-app", roles: list[str] | None = None, **claims: Any) -> str:
    """A JWT the test gateway accepts (unless ``claims`` spoil it)."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now + LIFETIME}
    if roles is not None:
        payload["roles"] = roles
    payload.update(claims)
    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
