"""SEND MAIL over SMTP: settings from config.csv over the environment, a local aiosmtpd server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from basic import BasicRuntimeError, Interpreter, compile_source
from config.packages import parse_config_csv
from pipeline.dialog_host import DialogHost
from pipeline.mail import MailError, MailNotConfigured, MailSettings, SmtpMailer
from pipeline.turn import Turn
from tests.pipeline.smtp import Inbox, smtp_inbox


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as server:
        yield server


ENV = {
    "SMTP_HOST": "smtp.env.example",
    "SMTP_PORT": "2525",
    "SMTP_USER": "env-user",
    "SMTP_PASSWORD": "env-secret",
    "SMTP_FROM": "bot@env.example",
}

SETTINGS = [
    ("no configuration at all", {}, "", MailSettings()),
    (
        "the environment alone",
        ENV,
        "",
        MailSettings(
            host="smtp.env.example",
            port=2525,
            user="env-user",
            password="env-secret",
            sender="bot@env.example",
        ),
    ),
    (
        "config.csv wins over the environment, row by row",
        ENV,
        "name,value\nEmail Server,mail.bot.example\nEmail Port,465\nEmail From,hi@bot.example\n",
        MailSettings(
            host="mail.bot.example",
            port=465,
            user="env-user",
            password="env-secret",
            sender="hi@bot.example",
        ),
    ),
    (
        "General Bots spellings and a security choice",
        {},
        "name,value\nemail-server,mx\nemail-pass,p\nemail-user,u\nEmail Security,STARTTLS\n",
        MailSettings(host="mx", user="u", password="p", security="starttls"),
    ),
]


@pytest.mark.parametrize(
    ("env", "config", "expected"), [s[1:] for s in SETTINGS], ids=[s[0] for s in SETTINGS]
)
def test_settings(env: dict[str, str], config: str, expected: MailSettings) -> None:
    mailer = SmtpMailer(MailSettings.from_env(env))
    assert mailer.settings_for(parse_config_csv(config)) == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("name,value\nEmail Port,smtp\n", "port 'smtp' is not a number"),
        ("name,value\nEmail Security,ssl3\n", "security 'ssl3' is not one of starttls, tls, none"),
    ],
)
def test_bad_settings_are_named(config: str, message: str) -> None:
    with pytest.raises(MailError, match=message):
        SmtpMailer().settings_for(parse_config_csv(config))


async def test_a_message_reaches_the_server(inbox: Inbox) -> None:
    mailer = SmtpMailer(MailSettings(host=inbox.host, port=inbox.port, sender="bot@test"))
    await mailer.send({}, "ana@example.com; bia@example.com", "Your order", "It ships today.")
    got = inbox.received[-1]
    assert got.sender == "bot@test"
    assert got.recipients == ["ana@example.com", "bia@example.com"]
    assert got.message["Subject"] == "Your order"
    assert got.message.get_payload(decode=True).decode().strip() == "It ships today."


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_the_login_is_sent_when_the_server_asks_for_one() -> None:
    with smtp_inbox(credentials=("bot-user", "s3cret")) as server:
        settings = MailSettings(host=server.host, port=server.port, sender="bot@test")
        mailer = SmtpMailer(replace(settings, user="bot-user", password="s3cret"))
        await mailer.send({}, "ana@example.com", "Hello", "Signed in.")
        assert server.logins == ["bot-user"]
        assert [r.recipients for r in server.received] == [["ana@example.com"]]

        with pytest.raises(MailError, match=f"SEND MAIL via 127.0.0.1:{server.port} failed"):
            await SmtpMailer(replace(settings, user="bot-user", password="wrong")).send(
                {}, "ana@example.com", "Hello", "Refused."
            )
        with pytest.raises(MailError, match=f"SEND MAIL via 127.0.0.1:{server.port} failed"):
            await SmtpMailer(settings).send({}, "ana@example.com", "Hello", "No login.")
        assert server.logins == ["bot-user"]
        assert len(server.received) == 1


async def test_no_server_is_a_clear_error() -> None:
    with pytest.raises(MailNotConfigured, match=r"set 'Email Server' in config\.csv"):
        await SmtpMailer().send({}, "ana@example.com", "s", "b")


async def test_an_unreachable_server_is_a_clear_error() -> None:
    with smtp_inbox() as stopped:
        pass
    mailer = SmtpMailer(
        MailSettings(host=stopped.host, port=stopped.port, sender="bot@test", timeout=2)
    )
    with pytest.raises(MailError, match=f"SEND MAIL via 127.0.0.1:{stopped.port} failed"):
        await mailer.send({}, "ana@example.com", "s", "b")


async def test_send_mail_in_a_dialog_without_a_server(make_turn: Callable[..., Turn]) -> None:
    program = compile_source('SEND MAIL "ana@example.com", "Hi", "Body"\n', "mail.bas")
    interpreter = Interpreter({"mail": program}, DialogHost(make_turn("llm-tools")))
    with pytest.raises(BasicRuntimeError) as error:
        await interpreter.start("mail")
    assert str(error.value) == (
        "mail.bas:1: SEND MAIL needs a mail server: set 'Email Server' in config.csv "
        "(or SMTP_HOST in the environment)"
    )
