"""BASIC's SEND TEMPLATE and SEND TEMPLATE TO, through the gateway to the fake Graph API.

A dialog on the web channel names WhatsApp users and templates; what the fake receives is
the Cloud API's template message, with positional or named parameters, whether or not the
user's 24-hour window is open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.keys import STORES
from tests.channels.fake_graph import PHONE_NUMBER_ID, FakeGraphApi
from tests.channels.fake_graph import TOKEN as GRAPH_TOKEN
from tests.channels.fake_telegram import FakeBotApi
from tests.channels.gateway_harness import eventually, telegram_rows, write_bot
from tests.databases import temporary_database
from tests.fake_servers import fake_server
from tests.gateway.credentials import bearer, hs256_token
from tests.gateway.test_proactive import AUTH, settings_for
from tests.offline_network import offline_network  # noqa: F401  (autouse: no real network)

Client = TestClient  # type: ignore[type-arg]
APP = bearer(hs256_token(roles=["app"]))

NOTICES = """\
TALK "Which notice?"
HEAR what
IF what = "one" THEN
    r = SEND TEMPLATE "table_ready", "+1 650 555 0001", "whatsapp", #{customer: "Ada", table: "4"}
    TALK "one: " + r.status + " " + r.recipient + " " + r.success
ELSEIF what = "many" THEN
    people = ["+16505550002", "+16505550003", "not a number"]
    r = SEND_TEMPLATE_TO "news", people, "whatsapp", ["Dec"]
    TALK "many: " + r.sent + " of " + r.total
ELSEIF what = "telegram" THEN
    r = SEND TEMPLATE "news", "424242", "telegram"
    TALK "telegram: " + r.success + " " + r.error
ELSEIF what = "email" THEN
    r = SEND TEMPLATE "news", "ada@example.com", "email"
    TALK "email: " + r.success
ELSE
    SEND TEMPLATE TO "whatsapp:+16505550004", "welcome"
    TALK "to: done"
END IF
"""


graph = fake_server(FakeGraphApi)
telegram = fake_server(FakeBotApi)


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    server_database_url: str,
    tmp_path: Path,
    graph: FakeGraphApi,
    telegram: FakeBotApi,
    aiohttp_client,
) -> AsyncIterator[Client]:
    folder = tmp_path / "bots"
    write_bot(
        folder,
        "notices",
        {
            "whatsapp-api-key": GRAPH_TOKEN,
            "whatsapp-phone-number-id": PHONE_NUMBER_ID,
            "whatsapp-app-secret": "notices-app-secret",
            "whatsapp-api-url": graph.api_url,
            "whatsapp-template-language": "pt_BR",
            **telegram_rows(telegram, "notices_webhook_secret-1"),
        },
        NOTICES,
    )
    async with temporary_database(server_database_url, "botserver_templates") as url:
        yield await aiohttp_client(create_app(settings_for(url, folder, tmp_path), auth=AUTH))


async def say(client: Client, user: str, text: str) -> list[str]:
    resp = await client.post(
        "/api/v1/bots/notices/messages", json={"user_id": user, "text": text}, headers=APP
    )
    assert resp.status == 200, await resp.text()
    return [r["text"] for r in (await resp.json())["replies"]]


def templates_to(graph: FakeGraphApi, to: str) -> list[dict[str, Any]]:
    return [m["template"] for m in graph.sent if m.get("to") == to and m["type"] == "template"]


async def test_a_template_with_named_parameters_reaches_a_whatsapp_user(
    client: Client, graph: FakeGraphApi
) -> None:
    assert await say(client, "web-1", "hi") == ["Which notice?"]
    assert await say(client, "web-1", "one") == ["one: queued 16505550001 true"]
    [template] = await eventually(lambda: templates_to(graph, "16505550001"))
    assert template["name"] == "table_ready" and template["language"] == {"code": "pt_BR"}
    [body] = template["components"]
    assert body["parameters"] == [
        {"type": "text", "parameter_name": "customer", "text": "Ada"},
        {"type": "text", "parameter_name": "table", "text": "4"},
    ]
    # Committed with the turn, as the turn's other messages are.
    async with client.server.app[STORES].pool.acquire() as conn:  # type: ignore[attr-defined]
        row = await conn.fetchrow(
            "SELECT inbox_seq, status FROM outbox WHERE conversation = '16505550001'"
        )
    assert row["inbox_seq"] is not None


async def test_many_recipients_each_get_the_template_and_bad_ones_are_counted(
    client: Client, graph: FakeGraphApi
) -> None:
    await say(client, "web-2", "hi")
    assert await say(client, "web-2", "many") == ["many: 2 of 3"]
    for to in ("16505550002", "16505550003"):
        [template] = await eventually(lambda to=to: templates_to(graph, to))  # type: ignore[misc]
        assert template["name"] == "news"
        assert template["components"][0]["parameters"] == [{"type": "text", "text": "Dec"}]


async def test_send_template_to_one_recipient_uses_talk_tos_address(
    client: Client, graph: FakeGraphApi
) -> None:
    await say(client, "web-3", "hi")
    assert await say(client, "web-3", "to") == ["to: done"]
    [template] = await eventually(lambda: templates_to(graph, "16505550004"))
    assert template == {"name": "welcome", "language": {"code": "pt_BR"}}


async def test_channels_without_templates_answer_a_failed_result(
    client: Client, graph: FakeGraphApi, telegram: FakeBotApi
) -> None:
    await say(client, "web-4", "hi")
    [answer] = await say(client, "web-4", "telegram")
    assert answer.startswith("telegram: false ") and "no message templates" in answer
    await say(client, "web-5", "hi")
    assert await say(client, "web-5", "email") == ["email: false"]
    assert graph.sent == [] and telegram.messages == {}


async def test_the_send_api_takes_a_template_instead_of_text(
    client: Client, graph: FakeGraphApi
) -> None:
    payload = {
        "channel": "whatsapp",
        "to": "+1 650 555 0009",
        "template": {"name": "table_ready", "params": ["Ada", "4"]},
    }
    resp = await client.post("/api/v1/bots/notices/send", json=payload, headers=APP)
    assert resp.status == 202, await resp.text()
    [template] = await eventually(lambda: templates_to(graph, "16505550009"))
    assert template["components"][0]["parameters"] == [
        {"type": "text", "text": "Ada"},
        {"type": "text", "text": "4"},
    ]
    for bad in (
        {**payload, "text": "and text"},
        {**payload, "template": {"name": ""}},
        {**payload, "template": {"name": "x", "params": "Ada"}},
        {"channel": "telegram", "to": "42", "template": {"name": "news"}},
    ):
        resp = await client.post("/api/v1/bots/notices/send", json=bad, headers=APP)
        assert resp.status == 400, bad
        assert (await resp.json())["error"] == "bad_request"
