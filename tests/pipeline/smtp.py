"""A local SMTP server (aiosmtpd) that keeps what it receives, for SEND MAIL tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message


@dataclass
class Inbox:
    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    credentials: tuple[str, str] | None = None  # required login and password, if any
    logins: list[str] = field(default_factory=list)  # logins accepted, in order

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        if (login, password) != self.credentials:
            return AuthResult(success=False, handled=False)
        self.logins.append(login)
        return AuthResult(success=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            Received(
                envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)
            )
        )
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_inbox(credentials: tuple[str, str] | None = None) -> Iterator[Inbox]:
    """A server on 127.0.0.1; with ``credentials`` it refuses mail until AUTH with them."""
    inbox = Inbox("127.0.0.1", _free_port(), credentials=credentials)
    auth: dict[str, Any] = {}
    if credentials is not None:
        # Plain-text AUTH on loopback: TLS is not what these tests are about.
        auth = {
            "authenticator": inbox.authenticate,
            "auth_required": True,
            "auth_require_tls": False,
        }
    controller = Controller(inbox, hostname=inbox.host, port=inbox.port, **auth)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
