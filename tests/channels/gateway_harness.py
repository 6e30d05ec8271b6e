"""What the end-to-end channel tests share: a real gateway whose bots talk to the fake
Telegram, Graph and Twilio APIs on 127.0.0.1.

``write_bot`` lays out a bot package (its dialog and its ``config.csv``);
``channel_rows`` (or ``telegram_rows``, ``whatsapp_rows``, ``twilio_rows``) are the
config rows that point a bot's channels at the fakes, with the secrets below;
``gateway_settings`` are the settings of a gateway serving those bots. ``tg_post``,
``wa_post`` and ``twilio_post`` send the gateway a webhook signed as each provider signs
it; ``eventually`` waits for a fake to have recorded what the gateway sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient
from twilio.request_validator import RequestValidator

from config.settings import Settings
from tests.channels.fake_graph import PHONE_NUMBER_ID, FakeGraphApi
from tests.channels.fake_graph import TOKEN as GRAPH_TOKEN
from tests.channels.fake_telegram import TOKEN as TELEGRAM_TOKEN
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioApi

Client = TestClient  # type: ignore[type-arg]

TG_SECRET = "relay_webhook_secret-1"
APP_SECRET = "relay-app-secret"
VERIFY_TOKEN = "relay-verify"
TWILIO_FROM = "+15005550006"
CHAT = 424242
WA_USER = "16505551234"
SMS_USER = "+14155550100"

RELAY = """\
TALK "Hello from relay."
n = 0
DO WHILE n >= 0
    HEAR line
    IF line = "long" THEN
        s = ""
        FOR i = 1 TO 160
            s = s + "Sentence number " + i + " is here. "
        NEXT
        TALK s
    ELSE
        TALK "You said: **" + line + "**"
        IF line = "twice" THEN
            TALK "And again: " + line
        END IF
    END IF
LOOP
"""


def write_bot(folder: Path, name: str, config: dict[str, str], dialog: str = RELAY) -> None:
    """Write the package ``{name}.gbai`` in ``folder``: ``dialog`` as its start.bas, and
    ``config`` as the rows of its config.csv."""
    package = folder / f"{name}.gbai"
    (package / f"{name}.gbdialog").mkdir(parents=True)
    (package / f"{name}.gbot").mkdir()
    (package / f"{name}.gbdialog" / "start.bas").write_text(dialog)
    rows = "".join(f"{k},{v}\n" for k, v in config.items())
    (package / f"{name}.gbot" / "config.csv").write_text("name,value\n" + rows)


def telegram_rows(telegram: FakeBotApi, secret: str = TG_SECRET) -> dict[str, str]:
    """The config rows of a Telegram bot on the fake Bot API, its webhook signed by ``secret``."""
    return {
        "telegram-bot-token": TELEGRAM_TOKEN,
        "telegram-webhook-secret": secret,
        "telegram-api-url": telegram.api_url,
    }


def whatsapp_rows(graph: FakeGraphApi) -> dict[str, str]:
    """The config rows of a WhatsApp number on the fake Graph API."""
    return {
        "whatsapp-api-key": GRAPH_TOKEN,
        "whatsapp-phone-number-id": PHONE_NUMBER_ID,
        "whatsapp-app-secret": APP_SECRET,
        "whatsapp-verify-token": VERIFY_TOKEN,
        "whatsapp-api-url": graph.api_url,
    }


def twilio_rows(twilio: FakeTwilioApi) -> dict[str, str]:
    """The config rows of a Twilio number on the fake Twilio REST API."""
    return {
        "twilio-account-sid": ACCOUNT_SID,
        "twilio-auth-token": AUTH_TOKEN,
        "twilio-from-number": TWILIO_FROM,
        "twilio-api-url": twilio.api_url,
    }


def channel_rows(
    telegram: FakeBotApi, graph: FakeGraphApi, twilio: FakeTwilioApi
) -> dict[str, str]:
    """The config rows of a bot on Telegram, WhatsApp and Twilio, each on its fake."""
    return telegram_rows(telegram) | whatsapp_rows(graph) | twilio_rows(twilio)


def gateway_settings(database: str, bots: Path, data: Path, **more: Any) -> Settings:
    """The settings of a gateway serving the packages in ``bots`` on ``database``: bodies of
    64 KiB at most, and a message up to three days old still answered."""
    return Settings(
        bots_dir=bots,
        data_dir=data,
        database_url=database,
        max_body_bytes=64 * 1024,
        max_message_age=3 * 86400,
        **more,
    )


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Wait until ``check()`` is truthy and return it."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# -- Telegram ---------------------------------------------------------------------------------


def tg_update(update_id: int, text: str, chat: int = CHAT) -> bytes:
    """A Bot API update: a text message from the private chat ``chat``."""
    message = {
        "message_id": update_id,
        "from": {"id": chat, "is_bot": False, "first_name": "Ada"},
        "chat": {"id": chat, "first_name": "Ada", "type": "private"},
        "date": int(time.time()),
        "text": text,
    }
    return json.dumps({"update_id": update_id, "message": message}).encode()


async def tg_post(
    client: Client, body: bytes, secret: str | None = TG_SECRET, bot: str = "relay"
) -> int:
    """Post ``body`` to the bot's Telegram webhook with ``secret`` (none if None); the status."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    resp = await client.post(f"/webhooks/telegram/{bot}", data=body, headers=headers)
    return resp.status


def tg_texts(api: FakeBotApi, chat: int = CHAT) -> list[str]:
    """The texts of the messages in ``chat`` at the fake Bot API, in order."""
    return [m["text"] for (c, _), m in sorted(api.messages.items()) if c == chat]


# -- WhatsApp ---------------------------------------------------------------------------------


def wa_message(wamid: str, text: str, at: datetime | None = None) -> dict[str, Any]:
    """A Cloud API notification of one text message from ``WA_USER``, written ``at``."""
    stamp = int((at or datetime.now(UTC)).timestamp())
    message = {
        "from": WA_USER,
        "id": wamid,
        "timestamp": str(stamp),
        "type": "text",
        "text": {"body": text},
    }
    return wa_notification(messages=[message])


def wa_media(wamid: str, kind: str, media: dict[str, Any]) -> dict[str, Any]:
    """A Cloud API message from ``WA_USER`` of type ``kind`` (``image``, ``audio``,
    ``voice``, ``document``…) written now, ``media`` its object (the media id and type)."""
    return {
        "from": WA_USER,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": kind,
        kind: media,
    }


def wa_notification(**value: Any) -> dict[str, Any]:
    """A Cloud API notification to the fake's number whose change carries ``value``."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        **value,
    }
    if "messages" in value:
        body["contacts"] = [
            {"profile": {"name": "Sheena"}, "wa_id": WA_USER, "user_id": "US.1349120865530"}
        ]
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": body, "field": "messages"}]}],
    }


async def wa_post(
    client: Client, payload: dict[str, Any], secret: str = APP_SECRET, bot: str = "relay"
) -> int:
    """Post ``payload`` to the bot's WhatsApp webhook, signed with ``secret``; the status."""
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    resp = await client.post(
        f"/webhooks/whatsapp/{bot}",
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )
    return resp.status


# -- Twilio -----------------------------------------------------------------------------------


async def twilio_post(
    client: Client, form: dict[str, str], token: str = AUTH_TOKEN, bot: str = "relay"
) -> Any:
    """Post ``form`` to the bot's Twilio webhook, signed with ``token``; the response."""
    url = str(client.make_url(f"/webhooks/twilio/{bot}"))
    signature = RequestValidator(token).compute_signature(url, form)
    return await client.post(
        f"/webhooks/twilio/{bot}",
        data=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def sms(sid: str, body: str) -> dict[str, str]:
    """Twilio's webhook form of an SMS from ``SMS_USER`` to the bot's number."""
    return {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": SMS_USER,
        "To": TWILIO_FROM,
        "Body": body,
        "NumMedia": "0",
    }
