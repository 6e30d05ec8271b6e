"""The gateway's provider webhooks end to end: a real gateway on a real PostgreSQL, the real
SDKs, and fake Telegram, Graph and Twilio APIs on 127.0.0.1.

A message goes in through ``/webhooks/…/{bot}``, is claimed, runs its turn in a
worker and comes out of the outbox through the delivery worker to the fake
provider, where the tests read what the user would see.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from channels.telegram_transport import redacted
from gateway.app import create_app
from gateway.keys import DELIVERY, STORES
from tests.channels.fake_graph import PHONE_NUMBER_ID, FakeGraphApi
from tests.channels.fake_graph import TOKEN as GRAPH_TOKEN
from tests.channels.fake_telegram import TOKEN as TELEGRAM_TOKEN
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.fake_twilio import AUTH_TOKEN, FakeTwilioApi
from tests.channels.gateway_harness import (
    APP_SECRET,
    CHAT,
    TWILIO_FROM,
    VERIFY_TOKEN,
    WA_USER,
    Client,
    channel_rows,
    eventually,
    gateway_settings,
    sms,
    tg_post,
    tg_texts,
    tg_update,
    twilio_post,
    wa_message,
    wa_notification,
    wa_post,
    write_bot,
)
from tests.databases import database_fixture
from tests.fake_servers import fake_server

ADMIN_TOKEN = "gateway-webhooks-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

telegram = fake_server(FakeBotApi)
graph = fake_server(FakeGraphApi)
twilio = fake_server(FakeTwilioApi)
database = database_fixture("botserver_wh")


@pytest.fixture
def bots(
    tmp_path: Path,
    telegram: FakeBotApi,
    graph: FakeGraphApi,
    twilio: FakeTwilioApi,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("RELAY_TELEGRAM_TOKEN", TELEGRAM_TOKEN)
    folder = tmp_path / "bots"
    write_bot(
        folder,
        "relay",
        channel_rows(telegram, graph, twilio)
        | {
            "telegram-bot-token": "${RELAY_TELEGRAM_TOKEN}",
            "whatsapp-template": "reply_ready",
            "whatsapp-template-language": "en",
        },
    )
    # Telegram in polling mode: no webhook, no secret needed.
    write_bot(
        folder,
        "poller",
        {
            "telegram-bot-token": TELEGRAM_TOKEN,
            "telegram-mode": "polling",
            "telegram-api-url": telegram.api_url,
        },
    )
    # Asks for Telegram but lacks the webhook secret, and WhatsApp with a variable not set.
    write_bot(
        folder,
        "halfset",
        {
            "telegram-bot-token": TELEGRAM_TOKEN,
            "whatsapp-api-key": "${HALFSET_NOT_SET}",
            "whatsapp-phone-number-id": PHONE_NUMBER_ID,
            "whatsapp-app-secret": APP_SECRET,
        },
    )
    return folder


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str, bots: Path, tmp_path: Path, aiohttp_client, monkeypatch: pytest.MonkeyPatch
) -> Client:
    # The database first: it is dropped only after the gateway has closed its pool.
    monkeypatch.setenv("BOTSERVER_ADMIN_TOKEN", ADMIN_TOKEN)  # channel state is admin's
    return await aiohttp_client(create_app(gateway_settings(database, bots, tmp_path / "data")))


# -- Telegram ---------------------------------------------------------------------------------


async def test_a_telegram_message_is_answered_through_its_webhook_and_the_outbox(
    client: Client, telegram: FakeBotApi
) -> None:
    assert await tg_post(client, tg_update(1, "hi")) == 200
    await eventually(lambda: tg_texts(telegram) == ["Hello from relay."])
    assert await tg_post(client, tg_update(2, "pizza")) == 200
    await eventually(lambda: len(tg_texts(telegram)) == 2)
    assert tg_texts(telegram)[1] == "You said: pizza"
    # The bots' markdown became Telegram's HTML.
    [*_, last] = telegram.calls_to("sendMessage")
    assert last.params["text"] == "You said: <b>pizza</b>"
    assert last.params["parse_mode"] == "HTML"
    # The provider's id is recorded on the reply.
    stores = client.server.app[STORES]
    deadline = time.monotonic() + 5
    while True:  # the row is marked sent just after the provider answered
        async with stores.pool.acquire() as conn:
            ids = await conn.fetch(
                "SELECT provider_ids FROM outbox WHERE bot_id = 'relay' AND channel = 'telegram'"
                " AND status = 'sent' ORDER BY seq"
            )
        if len(ids) == 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert [len(r[0]) for r in ids] == [1, 1]


async def test_replies_waiting_behind_the_one_being_sent_go_out_without_a_poll(
    client: Client, telegram: FakeBotApi
) -> None:
    # The delivery worker polls rarely now: what is due must be announced by a wake-up.
    delivery = client.server.app[DELIVERY]
    delivery.policy = replace(delivery.policy, poll_interval=60.0)
    await asyncio.sleep(1.2)  # the poll under way when the policy changed ends
    assert await tg_post(client, tg_update(61, "hi")) == 200
    # Two replies of one turn: the second is leased once the first is sent. The third is
    # committed while those wait for the chat's rate (one a second), behind them.
    assert await tg_post(client, tg_update(62, "twice")) == 200
    assert await tg_post(client, tg_update(63, "after")) == 200
    await eventually(lambda: len(tg_texts(telegram)) == 4, within=10)
    assert tg_texts(telegram) == [
        "Hello from relay.",
        "You said: twice",
        "And again: twice",
        "You said: after",
    ]


@pytest.mark.parametrize("secret", [None, "", "not-the-secret"])
async def test_a_forged_or_missing_telegram_secret_is_refused_and_nothing_is_read(
    client: Client, telegram: FakeBotApi, secret: str | None
) -> None:
    assert await tg_post(client, tg_update(7, "hi"), secret) == 403
    counts = await client.server.app[STORES].inbox.counts("relay", "telegram")
    assert (counts.pending, counts.running, counts.last_received_at) == (0, 0, None)
    await asyncio.sleep(0.3)
    assert telegram.calls_to("sendMessage") == []


async def test_the_same_update_delivered_three_times_at_once_is_answered_once(
    client: Client, telegram: FakeBotApi
) -> None:
    body = tg_update(11, "hi")
    statuses = await asyncio.gather(*(tg_post(client, body) for _ in range(3)))
    assert statuses == [200, 200, 200]
    assert await tg_post(client, body) == 200  # and once more, later
    await eventually(lambda: tg_texts(telegram))
    await asyncio.sleep(0.5)
    assert tg_texts(telegram) == ["Hello from relay."]


async def test_a_long_reply_is_split_under_telegrams_limit_at_sentence_edges(
    client: Client, telegram: FakeBotApi
) -> None:
    await tg_post(client, tg_update(21, "hi"))
    await eventually(lambda: tg_texts(telegram))
    await tg_post(client, tg_update(22, "long"))
    parts = await eventually(lambda: tg_texts(telegram)[1:] if len(tg_texts(telegram)) >= 3 else [])
    await asyncio.sleep(0.3)
    parts = tg_texts(telegram)[1:]
    assert len(parts) == 2
    assert all(len(p) <= 4096 and p.endswith("is here.") for p in parts)
    assert " ".join(parts) == " ".join(f"Sentence number {i} is here." for i in range(1, 161))


async def test_a_429_with_retry_after_delays_the_send_and_delivers_it_once(
    client: Client, telegram: FakeBotApi
) -> None:
    telegram.fail_next("sendMessage", 429, retry_after=1)
    started = time.monotonic()
    await tg_post(client, tg_update(31, "hi"))
    await eventually(lambda: tg_texts(telegram))
    assert time.monotonic() - started >= 1.0
    await asyncio.sleep(0.3)
    assert tg_texts(telegram) == ["Hello from relay."]
    assert len(telegram.calls_to("sendMessage")) == 2  # the refused one and the one delivered


async def test_a_refused_send_is_parked_with_its_reason_for_the_operator(
    client: Client, telegram: FakeBotApi
) -> None:
    telegram.blocked.add(CHAT)
    await tg_post(client, tg_update(41, "hi"))
    stores = client.server.app[STORES]

    async def parked() -> int:
        return await stores.outbox.parked("relay", "telegram")

    deadline = time.monotonic() + 10
    while await parked() == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    async with stores.pool.acquire() as conn:
        error = await conn.fetchval("SELECT last_error FROM outbox WHERE status = 'dead'")
    assert "blocked" in error
    resp = await client.get("/api/v1/bots/relay/channels", headers=ADMIN)
    [state] = [c for c in (await resp.json())["channels"] if c["channel"] == "telegram"]
    assert state["parked_sends"] == 1
    assert len(telegram.calls_to("sendMessage")) == 1  # refused once, not retried


async def test_the_bot_token_never_reaches_the_log(
    client: Client, telegram: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await tg_post(client, tg_update(51, "hi"))
    await eventually(lambda: tg_texts(telegram))
    ours = [r for r in caplog.records if r.name != "aiohttp.access"]  # the fake's own log
    # PTB's lines of its calls are there (deleteWebhook, getUpdates), without the token.
    assert any(r.name.startswith("telegram") for r in ours)
    assert TELEGRAM_TOKEN not in "\n".join(r.getMessage() for r in ours)


def test_a_transport_error_naming_the_url_is_logged_without_the_token() -> None:
    url = f"http://127.0.0.1:1/bot{TELEGRAM_TOKEN}/sendMessage"
    assert redacted(f"aiohttp.InvalidURL: {url}") == (
        "aiohttp.InvalidURL: http://127.0.0.1:1/bot<redacted>/sendMessage"
    )


async def test_in_polling_mode_updates_are_fetched_and_answered(
    client: Client, telegram: FakeBotApi
) -> None:
    chat = 777
    update = json.loads(tg_update(0, "hi", chat=chat))
    del update["update_id"]
    await telegram.push_update(update)
    await eventually(lambda: tg_texts(telegram, chat) == ["Hello from relay."])
    assert telegram.calls_to("deleteWebhook")  # getUpdates works only without a webhook
    # The polling bot takes no webhooks: it has no secret to check them with.
    resp = await client.post(
        "/webhooks/telegram/poller",
        data=tg_update(99, "hi", chat=chat),
        headers={"X-Telegram-Bot-Api-Secret-Token": "guess"},
    )
    assert resp.status == 403


# -- WhatsApp ---------------------------------------------------------------------------------


async def test_the_whatsapp_handshake_echoes_the_challenge_only_for_our_token(
    client: Client,
) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201"}
    resp = await client.get("/webhooks/whatsapp/relay", params=query)
    assert (resp.status, await resp.text()) == (200, "1158201")
    resp = await client.get(
        "/webhooks/whatsapp/relay", params=query | {"hub.verify_token": "guess"}
    )
    assert resp.status == 403


async def test_a_whatsapp_message_is_answered_and_its_status_recorded(
    client: Client, graph: FakeGraphApi
) -> None:
    assert await wa_post(client, wa_message("wamid.A1", "hi")) == 200
    await eventually(lambda: graph.sent)
    [sent] = graph.sent
    assert sent["to"] == WA_USER and sent["text"]["body"] == "Hello from relay."
    assert await wa_post(client, wa_message("wamid.A2", "tea")) == 200
    await eventually(lambda: len(graph.sent) == 2)
    assert graph.sent[1]["text"]["body"] == "You said: *tea*"
    stores = client.server.app[STORES]
    async with stores.pool.acquire() as conn:
        provider_id = (
            await conn.fetchval(
                "SELECT provider_ids FROM outbox WHERE channel = 'whatsapp' ORDER BY seq LIMIT 1"
            )
        )[0]
    for status in ("delivered", "sent"):  # out of order, as Meta may send them
        report = {
            "id": provider_id,
            "status": status,
            "timestamp": "1749416390",
            "recipient_id": WA_USER,
        }
        assert await wa_post(client, wa_notification(statuses=[report])) == 200
    assert await stores.outbox.delivery_status("relay", "whatsapp", provider_id) == "delivered"


async def test_a_forged_whatsapp_signature_is_refused(client: Client, graph: FakeGraphApi) -> None:
    assert await wa_post(client, wa_message("wamid.F1", "hi"), secret="forged") == 403
    await asyncio.sleep(0.3)
    assert graph.sent == []


async def test_outside_the_24_hour_window_the_template_is_sent_instead(
    client: Client, graph: FakeGraphApi
) -> None:
    # A message written 25 hours ago, delivered only now: the window has closed.
    old = datetime.now(UTC) - timedelta(hours=25)
    assert await wa_post(client, wa_message("wamid.W1", "hi", at=old)) == 200
    [sent] = await eventually(lambda: graph.sent)
    assert sent["type"] == "template"
    assert sent["template"]["name"] == "reply_ready"
    assert sent["template"]["language"]["code"] == "en"
    [component] = sent["template"]["components"]
    assert component["parameters"] == [{"type": "text", "text": "Hello from relay."}]


# -- Twilio -----------------------------------------------------------------------------------


async def test_an_sms_is_answered_with_empty_twiml_and_a_reply_through_the_api(
    client: Client, twilio: FakeTwilioApi
) -> None:
    resp = await twilio_post(client, sms("SM" + "1" * 32, "hi"))
    assert resp.status == 200 and "<Response></Response>" in await resp.text()
    await eventually(lambda: twilio.calls)
    [call] = twilio.calls
    assert call.form["To"] == "+14155550100" and call.form["From"] == TWILIO_FROM
    assert call.form["Body"] == "Hello from relay."


async def test_a_long_sms_reply_is_split_at_1600(client: Client, twilio: FakeTwilioApi) -> None:
    await twilio_post(client, sms("SM" + "2" * 32, "hi"))
    await eventually(lambda: twilio.calls)
    await twilio_post(client, sms("SM" + "3" * 32, "long"))
    await eventually(lambda: len(twilio.calls) >= 4)
    await asyncio.sleep(0.3)
    bodies = [c.form["Body"] for c in twilio.calls[1:]]
    assert len(bodies) == 3  # 4,700 characters
    assert all(len(b) <= 1600 and b.endswith("is here.") for b in bodies)
    assert " ".join(bodies) == " ".join(f"Sentence number {i} is here." for i in range(1, 161))


async def test_a_forged_twilio_signature_is_refused(client: Client, twilio: FakeTwilioApi) -> None:
    resp = await twilio_post(client, sms("SM" + "4" * 32, "hi"), token="not-the-auth-token")
    assert resp.status == 403
    await asyncio.sleep(0.3)
    assert twilio.calls == []


# -- configuration and bad input ------------------------------------------------------------


async def test_a_channel_missing_a_secret_refuses_its_webhooks_and_says_why(
    client: Client,
) -> None:
    resp = await client.post(
        "/webhooks/telegram/halfset",
        data=tg_update(61, "hi"),
        headers={"X-Telegram-Bot-Api-Secret-Token": "anything"},
    )
    assert resp.status == 404
    resp = await client.get("/api/v1/bots/halfset/channels", headers=ADMIN)
    assert resp.status == 200
    text = await resp.text()
    states = {c["channel"]: c for c in json.loads(text)["channels"]}
    assert not states["telegram"]["configured"]
    assert "telegram-webhook-secret" in states["telegram"]["note"]
    assert not states["whatsapp"]["configured"]
    assert "HALFSET_NOT_SET" in states["whatsapp"]["note"]
    assert TELEGRAM_TOKEN not in text


async def test_channel_state_shows_what_each_channel_has(
    client: Client, telegram: FakeBotApi
) -> None:
    await tg_post(client, tg_update(71, "hi"))
    await eventually(lambda: tg_texts(telegram))
    resp = await client.get("/api/v1/bots/relay/channels", headers=ADMIN)
    states = {c["channel"]: c for c in (await resp.json())["channels"]}
    assert set(states) == {"telegram", "whatsapp", "twilio-whatsapp", "twilio-sms"}
    assert all(s["configured"] for s in states.values())
    assert states["telegram"]["last_inbound_at"] is not None
    assert states["telegram"]["queue"] == {"pending": 0, "running": 0}
    assert states["whatsapp"]["last_inbound_at"] is None


async def test_secrets_stay_out_of_the_stored_configuration(client: Client) -> None:
    stored = await client.server.app[STORES].bot_configs.get("relay")
    assert stored is not None
    assert stored["whatsapp-phone-number-id"] == PHONE_NUMBER_ID
    assert not {"telegram-bot-token", "whatsapp-api-key", "twilio-auth-token"} & set(stored)
    assert GRAPH_TOKEN not in json.dumps(stored) and AUTH_TOKEN not in json.dumps(stored)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/webhooks/telegram/nosuchbot", 404),
        ("/webhooks/telegram/..", 404),
        ("/webhooks/whatsapp/nosuchbot", 404),
        ("/webhooks/twilio/nosuchbot", 404),
    ],
)
async def test_a_webhook_for_an_unknown_bot_is_refused(
    client: Client, path: str, status: int
) -> None:
    resp = await client.post(path, data=b"{}")
    assert resp.status == status


async def test_an_oversized_webhook_body_is_refused(client: Client) -> None:
    body = b'{"update_id": 1, "x": "' + b"a" * (70 * 1024) + b'"}'
    assert await tg_post(client, body) == 413


async def test_a_verified_body_we_cannot_read_is_acknowledged(
    client: Client, telegram: FakeBotApi
) -> None:
    assert await tg_post(client, b"not json at all") == 200
    assert await tg_post(client, json.dumps({"update_id": 5, "poll": {"id": "1"}}).encode()) == 200
    await asyncio.sleep(0.2)
    assert telegram.calls_to("sendMessage") == []
