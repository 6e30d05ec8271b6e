"""The generic webhook end to end: a real gateway on a real PostgreSQL, signed requests in, and
a small callback receiver on 127.0.0.1 that checks the signature of every event it gets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from channels.base import ChannelNotConfigured
from channels.generic import GenericChannel, signed_headers
from channels.hub import build_channels
from config.settings import Settings
from gateway.app import create_app
from gateway.keys import STORES
from tests.channels.gateway_harness import eventually, write_bot
from tests.databases import database_fixture
from tests.fake_servers import fake_server

SECRET = "generic-webhook-secret-0123456789"
ECHO = """\
TALK "Hello from echo."
n = 0
DO WHILE n >= 0
    HEAR line
    TALK "You said: **" + line + "**"
LOOP
"""

Client = TestClient  # type: ignore[type-arg]


@dataclass
class Receiver:
    """A backend's callback endpoint: answers each POST with the next scripted status (200
    when none is left) and keeps what it got, with whether its signature checked out."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/events"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers.get("X-Botserver-Timestamp", "")
        mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        signed = hmac.compare_digest(
            "sha256=" + mac.hexdigest(), request.headers.get("X-Botserver-Signature", "")
        )
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        status = self.statuses.pop(0) if self.statuses else 200
        self.received.append(
            {"status": status, "signed": signed and fresh, "event": json.loads(body)}
        )
        return web.Response(status=status)

    def delivered(self) -> list[dict[str, Any]]:
        """The events answered 2xx, in order."""
        return [r["event"] for r in self.received if 200 <= r["status"] < 300]


receiver = fake_server(Receiver)
database = database_fixture("botserver_generic")


@pytest.fixture
def bots(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ECHO_WEBHOOK_SECRET", SECRET)
    folder = tmp_path / "bots"
    rows = {
        "webhook-secret": "${ECHO_WEBHOOK_SECRET}",
        "webhook-callback-url": receiver.url,
        "webhook-allow-private": "true",  # the receiver is on 127.0.0.1
    }
    write_bot(folder, "echo", rows, ECHO)
    # The same callback without the allow row: a loopback address is refused.
    write_bot(folder, "guarded", {**rows, "webhook-allow-private": "false"}, ECHO)
    write_bot(folder, "nosecret", {"webhook-callback-url": receiver.url}, ECHO)
    return folder


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str, bots: Path, tmp_path: Path, aiohttp_client
) -> Client:
    settings = Settings(
        bots_dir=bots, data_dir=tmp_path / "data", database_url=database, max_body_bytes=64 * 1024
    )
    return await aiohttp_client(create_app(settings))


def body(text: str, message_id: str | None = None, user_id: str = "u-1") -> bytes:
    message_id = message_id or f"m-{uuid.uuid4().hex[:8]}"
    return json.dumps({"user_id": user_id, "text": text, "message_id": message_id}).encode()


async def post(
    client: Client,
    data: bytes,
    *,
    bot: str = "echo",
    secret: str = SECRET,
    at: float | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    sent = headers if headers is not None else signed_headers(secret.encode(), data, now=at)
    resp = await client.post(f"/webhooks/generic/{bot}", data=data, headers=sent)
    return resp.status, await resp.json()


async def test_a_signed_message_is_answered_on_the_callback_signed(
    client: Client, receiver: Receiver
) -> None:
    status, answer = await post(client, body("hi", "m-1"))
    assert (status, answer) == (200, {"accepted": True, "message_id": "m-1"})
    [event] = await eventually(receiver.delivered)
    assert event["event"] == "message"
    assert (event["user_id"], event["bot"]) == ("u-1", "echo")
    assert event["text"] == "Hello from echo."
    assert event["reply_to"] == "m-1"
    assert event["id"].startswith("msg-echo-")
    assert all(r["signed"] for r in receiver.received)
    await post(client, body("tea", "m-2"))
    await eventually(lambda: len(receiver.delivered()) == 2)
    assert receiver.delivered()[1]["text"] == "You said: **tea**"  # markdown passed through


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Botserver-Timestamp": str(int(time.time()))},
        {"X-Botserver-Timestamp": "soon", "X-Botserver-Signature": "sha256=00"},
    ],
    ids=["nothing", "no-signature", "not-a-timestamp"],
)
async def test_a_request_without_a_valid_signature_is_refused(
    client: Client, receiver: Receiver, headers: dict[str, str]
) -> None:
    status, answer = await post(client, body("hi"), headers=headers)
    assert (status, answer["error"]) == (403, "forbidden")
    counts = await client.server.app[STORES].inbox.counts("echo", "generic")
    assert counts.last_received_at is None
    await asyncio.sleep(0.3)
    assert receiver.received == []


async def test_a_forged_signature_is_refused(client: Client, receiver: Receiver) -> None:
    status, _ = await post(client, body("hi"), secret="not-the-secret-at-all-0000")
    assert status == 403
    # A signature of other bytes does not cover these.
    data = body("hi")
    headers = signed_headers(SECRET.encode(), data.replace(b"hi", b"ho"))
    assert (await post(client, data, headers=headers))[0] == 403
    await asyncio.sleep(0.3)
    assert receiver.received == []


@pytest.mark.parametrize("offset", [-301, -3600, 61, 3600], ids=["5min", "1h", "future", "1hf"])
async def test_a_stale_or_future_timestamp_is_refused(
    client: Client, receiver: Receiver, offset: int
) -> None:
    status, _ = await post(client, body("hi"), at=time.time() + offset)
    assert status == 403
    await asyncio.sleep(0.2)
    assert receiver.received == []


async def test_a_replayed_request_is_refused_and_a_resigned_retry_is_a_duplicate(
    client: Client, receiver: Receiver
) -> None:
    data = body("hi", "m-replay")
    headers = signed_headers(SECRET.encode(), data)
    assert (await post(client, data, headers=headers))[0] == 200
    status, answer = await post(client, data, headers=headers)  # the same bytes again
    assert (status, answer["error"]) == (403, "replayed")
    # The sender's retry signs again: accepted, recognised as the same message, no new turn.
    await asyncio.sleep(1.1)  # a new timestamp second
    status, answer = await post(client, data)
    assert (status, answer["accepted"]) == (200, False)
    await eventually(receiver.delivered)
    await asyncio.sleep(0.5)
    assert [e["text"] for e in receiver.delivered()] == ["Hello from echo."]


async def test_an_unreadable_signed_body_is_a_400_saying_why(client: Client) -> None:
    data = json.dumps({"user_id": "u-1", "text": "hi"}).encode()
    status, answer = await post(client, data)
    assert status == 400 and "message_id" in answer["message"]


async def test_the_callback_is_retried_on_5xx_then_delivered_once(
    client: Client, receiver: Receiver
) -> None:
    receiver.statuses = [503, 500]
    await post(client, body("hi", "m-retry"))
    await eventually(receiver.delivered, within=20)
    await asyncio.sleep(0.5)
    attempts = [r["event"] for r in receiver.received]
    assert [r["status"] for r in receiver.received] == [503, 500, 200]
    assert len({e["id"] for e in attempts}) == 1  # one event id for every try
    assert all(r["signed"] for r in receiver.received)  # signed again (fresh) on each try
    async with client.server.app[STORES].pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, attempts FROM outbox WHERE bot_id = 'echo' AND channel = 'generic'"
        )
    assert (row["status"], row["attempts"]) == ("sent", 3)


async def test_a_private_callback_is_refused_without_the_allow_row(
    client: Client, receiver: Receiver
) -> None:
    await post(client, body("hi"), bot="guarded")
    stores = client.server.app[STORES]
    deadline = time.monotonic() + 10
    while await stores.outbox.parked("guarded", "generic") == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    async with stores.pool.acquire() as conn:
        error = await conn.fetchval(
            "SELECT last_error FROM outbox WHERE bot_id = 'guarded' AND status = 'dead'"
        )
    assert "private" in error and "webhook-allow-private" in error
    assert receiver.received == []  # nothing reached the loopback address


async def test_a_channel_without_its_secret_is_off(client: Client) -> None:
    status, answer = await post(client, body("hi"), bot="nosecret")
    assert (status, answer["error"]) == (404, "channel_off")


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ({"webhook-callback-url": "https://app.example/cb"}, "needs webhook-secret"),
        ({"webhook-secret": SECRET}, "needs webhook-callback-url"),
        ({"webhook-secret": "short", "webhook-callback-url": "https://a.example"}, "16 bytes"),
        ({"webhook-secret": SECRET, "webhook-callback-url": "ftp://a.example"}, "http or https"),
        ({"webhook-secret": "${NOT_SET_ANYWHERE}", "webhook-callback-url": "https://a.b"}, "NOT"),
    ],
)
def test_a_partial_configuration_disables_the_channel_and_says_why(
    rows: dict[str, str], reason: str
) -> None:
    channels = build_channels("b", rows, {})
    state = channels.states["generic"]
    assert state.adapter is None and state.note is not None and reason in state.note


def test_the_allow_row_alone_does_not_ask_for_the_channel() -> None:
    assert "generic" not in build_channels("b", {"webhook-allow-private": "true"}, {}).states
    with pytest.raises(ChannelNotConfigured):
        GenericChannel.from_config("b", {"webhook-allow-private": "true"})
