"""Visitor tokens: the anonymous web widget's identity, signed by the gateway.

A token reads ``bv1.<user id>.<signature>``, the signature an HMAC-SHA256 of
the user id under the gateway's visitor key (``BOTSERVER_VISITOR_SECRET``,
else a key made once and kept in the database, shared by every instance).
The browser keeps its token in local storage; whoever holds it is that user
and nobody else is. Tokens do not expire: a new key (a new secret) makes
every one of them invalid, and their browsers start over with new ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

PREFIX = "bv1."
_DOMAIN = b"botserver visitor token v1\x00"  # a signature of ours means only this
_TOKEN = re.compile(r"^bv1\.(web-[0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")


def is_visitor_token(token: str) -> bool:
    """Whether ``token`` has a visitor token's shape (says nothing of its validity)."""
    return token.startswith(PREFIX)


class VisitorTokens:
    """Issues and checks visitor tokens under one secret key."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the visitor key must be at least 32 bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "VisitorTokens(<secret>)"

    def issue(self) -> tuple[str, str]:
        """A new visitor: ``(token, user_id)``."""
        user_id = "web-" + secrets.token_hex(16)
        return self._token(user_id), user_id

    def verify(self, token: str) -> str | None:
        """The token's user id, or None when it is malformed or not signed with our key."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        user_id, signature = match.groups()
        if not hmac.compare_digest(self._token(user_id).rpartition(".")[2], signature):
            return None
        return user_id

    def _token(self, user_id: str) -> str:
        mac = hmac.new(self._secret, _DOMAIN + user_id.encode(), hashlib.sha256).digest()
        return f"{PREFIX}{user_id}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
