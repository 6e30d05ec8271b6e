"""SEND MAIL over SMTP (aiosmtplib).

Settings come from the bot's config.csv (``Email Server``, ``Email Port``, ``Email User``,
``Email Password``, ``Email From``, ``Email Security`` = ``starttls`` | ``tls`` | ``none``), each
falling back to the process environment (``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_USER``,
``SMTP_PASSWORD``, ``SMTP_FROM``, ``SMTP_SECURITY``). Without a server, SEND MAIL fails with
an error saying so. Security defaults to implicit TLS on port 465 and STARTTLS when the server
offers it otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

DEFAULT_TIMEOUT = 30.0
SECURITY_CHOICES = ("starttls", "tls", "none", "auto")


class MailError(Exception):
    """SEND MAIL could not be done; the message says why (no server, refused, bad setting)."""


class MailNotConfigured(MailError):
    """No SMTP server is configured for this bot or process."""


@dataclass(frozen=True, slots=True)
class MailSettings:
    """Where and how to send mail."""

    host: str = ""
    port: int | None = None
    user: str = ""
    password: str = ""
    sender: str = ""
    security: str = "auto"  # starttls | tls | none | auto
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MailSettings:
        env = os.environ if environ is None else environ
        return cls._from(
            lambda key: env.get(f"SMTP_{key.upper()}", ""), cls(), source="environment SMTP_*"
        )

    def overridden_by(self, config: Mapping[str, str]) -> MailSettings:
        """These settings with the bot's config.csv rows taking precedence."""

        def read(key: str) -> str:
            names = {
                "host": ("email-server", "email-host"),
                "password": ("email-password", "email-pass"),
            }
            for name in names.get(key, (f"email-{key}",)):
                value = config.get(name, "")
                if value.strip():
                    return value
            return ""

        return self._from(read, self, source="config.csv Email *")

    @classmethod
    def _from(cls, read: Callable[[str], str], base: MailSettings, *, source: str) -> MailSettings:
        port_text = read("port").strip()
        try:
            port = int(port_text) if port_text else base.port
        except ValueError as e:
            raise MailError(f"{source}: port {port_text!r} is not a number") from e
        security = read("security").strip().lower() or base.security
        if security not in SECURITY_CHOICES:
            raise MailError(f"{source}: security {security!r} is not one of starttls, tls, none")
        return replace(
            base,
            host=read("host").strip() or base.host,
            port=port,
            user=read("user").strip() or base.user,
            password=read("password") or base.password,
            sender=read("from").strip() or base.sender,
            security=security,
        )


class SmtpMailer:
    """Sends one message per call; holds the process-wide defaults (environment)."""

    def __init__(self, defaults: MailSettings | None = None) -> None:
        self.defaults = defaults if defaults is not None else MailSettings()

    def settings_for(self, config: Mapping[str, str]) -> MailSettings:
        return self.defaults.overridden_by(config)

    async def send(self, config: Mapping[str, str], to: str, subject: str, body: str) -> None:
        settings = self.settings_for(config)
        if not settings.host:
            raise MailNotConfigured(
                "SEND MAIL needs a mail server: set 'Email Server' in config.csv "
                "(or SMTP_HOST in the environment)"
            )
        recipients = [a.strip() for a in to.replace(";", ",").split(",") if a.strip()]
        if not recipients:
            raise MailError("SEND MAIL needs a recipient address")
        sender = settings.sender or settings.user
        if not sender:
            raise MailError("SEND MAIL needs a sender: set 'Email From' in config.csv")
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid()
        message.set_content(body)
        use_tls = settings.security == "tls" or (
            settings.security == "auto" and settings.port == 465
        )
        start_tls: bool | None = {"starttls": True, "none": False}.get(settings.security)
        if use_tls:
            start_tls = False
        try:
            await aiosmtplib.send(
                message,
                sender=sender,
                recipients=recipients,
                hostname=settings.host,
                port=settings.port,
                username=settings.user or None,
                password=settings.password or None,
                use_tls=use_tls,
                start_tls=start_tls,
                timeout=settings.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as e:
            raise MailError(
                f"SEND MAIL via {settings.host}:{settings.port or 'default port'} failed: {e}"
            ) from e
