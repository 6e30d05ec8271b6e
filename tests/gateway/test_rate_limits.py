"""Rate limits of the public endpoints, end to end on real gateways: a burst beyond a limit is
429 with ``Retry-After`` and a JSON error, and passes again after the wait; the address and
credential buckets are separate; two gateways on one Redis share them; a Redis outage keeps
each gateway limiting on its own; WebSocket frames and webhooks are limited too."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request

from config.settings import Settings
from gateway.app import create_app
from gateway.auth import AuthConfig
from gateway.rate_limits import RateLimitConfig, client_address, parse_rate
from storage.base import Rate
from tests.gateway.credentials import bearer, hs256_token
from tests.tcp_proxy import TcpProxy

Client = TestClient  # type: ignore[type-arg]
REDIS_URL = "redis://127.0.0.1:6379"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
OFF = RateLimitConfig(None, None, None, None, None)


def unique_ip() -> str:
    """A client address of its own (sent as X-Forwarded-For from the trusted loopback), so
    that runs sharing one Redis never share a bucket."""
    return str(ipaddress.IPv4Address(random.randrange(0x0B000000, 0x0BFFFFFF)))


@pytest.fixture
def make_client(
    aiohttp_client: Any, settings: Settings, auth_config: AuthConfig
) -> Callable[..., Any]:
    async def make(limits: RateLimitConfig, *, redis_url: str | None = None) -> Client:
        # A data folder of its own: two gateways of one test do not share an embedded index.
        own = replace(
            settings,
            redis_url=redis_url,
            data_dir=settings.data_dir / uuid.uuid4().hex[:8],
            kb_ingest_on_load=False,
        )
        app = create_app(own, auth=auth_config, limits=limits)
        client: Client = await aiohttp_client(app)
        return client

    return make


async def new_visitor(client: Client, **headers: str) -> str:
    resp = await client.post("/api/v1/visitors", headers=headers)
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["visitor_token"]
    return token


async def assert_limited(resp: Any, what: str) -> int:
    """A 429 as the API promises it: JSON error, ``Retry-After`` in whole seconds."""
    assert resp.status == 429, await resp.text()
    body = await resp.json()
    assert body["error"] == "rate_limited"
    assert what in body["message"]
    retry_after = int(resp.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


# -- a burst, then the wait ------------------------------------------------------------------


async def test_a_burst_past_the_limit_is_429_then_passes_after_retry_after(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(replace(OFF, visitors=Rate(per_second=2.0, burst=3)))
    statuses = [(await client.post("/api/v1/visitors")).status for _ in range(3)]
    assert statuses == [201, 201, 201]
    refused = await client.post("/api/v1/visitors")
    retry_after = await assert_limited(refused, "new visitors")
    assert retry_after == 1  # one token comes back every 0.5 s
    await asyncio.sleep(retry_after)
    assert (await client.post("/api/v1/visitors")).status == 201


async def test_messages_are_limited_per_user_and_per_address_separately(
    make_client: Callable[..., Any],
) -> None:
    limits = replace(
        OFF,
        user=Rate(per_second=0.2, burst=2),
        ip=Rate(per_second=0.2, burst=6),
        trusted_proxies=LOOPBACK,
    )
    client = await make_client(limits)
    address = {"X-Forwarded-For": unique_ip()}
    one, two = await new_visitor(client, **address), await new_visitor(client, **address)

    async def say(token: str, text: str, headers: dict[str, str] = address) -> Any:
        return await client.post(
            "/api/v1/bots/default/messages",
            json={"text": text},
            headers={**headers, **bearer(token)},
        )

    assert (await say(one, "hi")).status == 200  # the address: 2 visitors + 1 = 3 of 6
    assert (await say(one, "hi")).status == 200  # 4 of 6
    await assert_limited(await say(one, "hi"), "from this user")  # user one's 2 are spent
    # Another user on the same address has a bucket of its own ...
    assert (await say(two, "hi")).status == 200  # 6 of 6 (the refusal took one too)
    # ... until the address's bucket is empty: then nobody on it passes,
    await assert_limited(await say(two, "hi"), "from this address")
    # while the same user from another address is only held by its own bucket.
    elsewhere = {"X-Forwarded-For": unique_ip()}
    assert (await say(two, "hi", elsewhere)).status == 200
    await assert_limited(await say(two, "hi", elsewhere), "from this user")


async def test_an_app_key_has_the_app_limit_and_each_credential_its_own(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(replace(OFF, app=Rate(per_second=0.2, burst=2)))
    app_a = bearer(hs256_token(sub="backend-a", roles=["app"]))
    app_b = bearer(hs256_token(sub="backend-b", roles=["app"]))

    async def history(headers: dict[str, str]) -> Any:
        return await client.get(
            f"/api/v1/bots/default/sessions/{uuid.uuid4()}/messages", headers=headers
        )

    assert [(await history(app_a)).status for _ in range(2)] == [404, 404]
    await assert_limited(await history(app_a), "with this credential")
    assert (await history(app_b)).status == 404  # another subject, another bucket


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    make_client: Callable[..., Any],
) -> None:
    untrusted = await make_client(replace(OFF, visitors=Rate(per_second=0.1, burst=1)))
    # Not behind a trusted proxy: a forged X-Forwarded-For does not buy a new bucket.
    assert (
        await untrusted.post("/api/v1/visitors", headers={"X-Forwarded-For": unique_ip()})
    ).status == 201
    refused = await untrusted.post("/api/v1/visitors", headers={"X-Forwarded-For": unique_ip()})
    await assert_limited(refused, "new visitors")

    trusted = await make_client(
        replace(OFF, visitors=Rate(per_second=0.1, burst=1), trusted_proxies=LOOPBACK)
    )
    for _ in range(3):  # a new client address each time, as the proxy says
        resp = await trusted.post("/api/v1/visitors", headers={"X-Forwarded-For": unique_ip()})
        assert resp.status == 201


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("203.0.113.7", None, (), "203.0.113.7"),
        ("203.0.113.7", "198.51.100.1", (), "203.0.113.7"),  # not trusted: header ignored
        ("10.0.0.2", "198.51.100.1", ("10.0.0.0/8",), "198.51.100.1"),
        # The client may send its own X-Forwarded-For: only the hops our proxies added count.
        ("10.0.0.2", "1.1.1.1, 198.51.100.1", ("10.0.0.0/8",), "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, 10.0.0.9", ("10.0.0.0/8",), "198.51.100.1"),
        ("10.0.0.2", "garbage, 198.51.100.1", ("10.0.0.0/8",), "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, garbage", ("10.0.0.0/8",), "10.0.0.2"),
        ("10.0.0.2", "10.0.0.5", ("10.0.0.0/8",), "10.0.0.5"),  # all trusted: the leftmost
        ("2001:db8:1:2:3:4:5:6", None, (), "2001:db8:1:2::/64"),  # an IPv6 host's /64
        ("::ffff:203.0.113.7", None, (), "203.0.113.7"),
    ],
)
def test_client_address(
    peer: str, forwarded: str | None, trusted: tuple[str, ...], client: str
) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = make_mocked_request("GET", "/", headers=headers).clone(remote=peer)
    networks = tuple(ipaddress.ip_network(n) for n in trusted)
    assert client_address(request, networks) == client


@pytest.mark.parametrize(
    ("raw", "rate"),
    [
        ("60/minute", Rate(per_second=1.0, burst=60)),
        ("10/second burst 40", Rate(per_second=10.0, burst=40)),
        ("10/s", Rate(per_second=10.0, burst=10)),
        ("3600/hour burst 5", Rate(per_second=1.0, burst=5)),
        ("  30 / min  ", Rate(per_second=0.5, burst=30)),
        ("off", None),
    ],
)
def test_rate_settings(raw: str, rate: Rate | None) -> None:
    assert parse_rate("X", raw) == rate


@pytest.mark.parametrize("raw", ["60", "60 per minute", "0/s", "10/day", "-1/s", "5/s burst 0"])
def test_a_wrong_rate_setting_is_refused_at_start(raw: str) -> None:
    with pytest.raises(ValueError, match="BOTSERVER_RATE_LIMIT_USER"):
        RateLimitConfig.from_env({"BOTSERVER_RATE_LIMIT_USER": raw})


def test_settings_from_the_environment() -> None:
    config = RateLimitConfig.from_env(
        {
            "BOTSERVER_RATE_LIMIT_IP": "100/second burst 300",
            "BOTSERVER_RATE_LIMIT_WEBHOOK": "off",
            "BOTSERVER_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
        }
    )
    assert config.ip == Rate(per_second=100.0, burst=300)
    assert config.webhook is None
    assert config.user == RateLimitConfig().user  # the default
    assert len(config.trusted_proxies) == 2
    everything_off = RateLimitConfig.from_env({"BOTSERVER_RATE_LIMITS": "off"})
    assert (everything_off.ip, everything_off.user, everything_off.app) == (None, None, None)
    with pytest.raises(ValueError, match="BOTSERVER_TRUSTED_PROXIES"):
        RateLimitConfig.from_env({"BOTSERVER_TRUSTED_PROXIES": "proxy.local"})


# -- shared by instances; a Redis outage -----------------------------------------------------


async def test_two_gateways_on_one_redis_share_the_buckets(
    make_client: Callable[..., Any],
) -> None:
    limits = replace(OFF, visitors=Rate(per_second=0.1, burst=4), trusted_proxies=LOOPBACK)
    one = await make_client(limits, redis_url=REDIS_URL)
    two = await make_client(limits, redis_url=REDIS_URL)
    address = {"X-Forwarded-For": unique_ip()}
    statuses = [
        (await (one if i % 2 else two).post("/api/v1/visitors", headers=address)).status
        for i in range(6)
    ]
    assert statuses == [201] * 4 + [429] * 2


async def test_without_redis_each_gateway_counts_alone(make_client: Callable[..., Any]) -> None:
    """The same two gateways with no Redis: each has its own bucket (what Redis fixes)."""
    limits = replace(OFF, visitors=Rate(per_second=0.1, burst=4), trusted_proxies=LOOPBACK)
    one, two = await make_client(limits), await make_client(limits)
    address = {"X-Forwarded-For": unique_ip()}
    statuses = [
        (await (one if i % 2 else two).post("/api/v1/visitors", headers=address)).status
        for i in range(6)
    ]
    assert statuses == [201] * 6


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_a_redis_outage_keeps_the_limits_and_logs_it(
    make_client: Callable[..., Any], redis_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis unreachable: the limits neither open (every request passing) nor fail the
    request; the gateway limits on its own and says so once."""
    limits = replace(OFF, visitors=Rate(per_second=0.1, burst=3), trusted_proxies=LOOPBACK)
    client = await make_client(limits, redis_url=redis_proxy.url)
    await redis_proxy.cut()
    address = {"X-Forwarded-For": unique_ip()}
    with caplog.at_level(logging.WARNING, logger="storage.rate_buckets"):
        statuses = [
            (await client.post("/api/v1/visitors", headers=address)).status for _ in range(5)
        ]
    assert statuses == [201] * 3 + [429] * 2
    outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage) == 1


# -- WebSocket frames, webhooks --------------------------------------------------------------


async def test_websocket_frames_over_the_user_limit_get_an_error_frame(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(replace(OFF, user=Rate(per_second=1.0, burst=2)))
    token = await new_visitor(client)
    ws = await client.ws_connect("/ws/default")
    await ws.send_json({"type": "auth", "token": token})
    assert (await ws.receive_json(timeout=10))["type"] == "ready"

    async def turn(text: str) -> list[dict[str, Any]]:
        await ws.send_json({"type": "message", "text": text})
        frames = []
        while True:
            frame = await ws.receive_json(timeout=10)
            frames.append(frame)
            if frame["type"] in ("done", "error"):
                return frames

    assert (await turn("hi"))[-1]["type"] == "done"
    assert (await turn("Ada"))[-1]["type"] == "done"
    refused = (await turn("again"))[-1]
    assert refused["error"] == "rate_limited" and refused["retry_after"] == 1
    await asyncio.sleep(refused["retry_after"])
    assert (await turn("again"))[-1]["type"] == "done"  # the socket stayed open
    await ws.close()


async def test_webhooks_are_limited_per_address_and_bot(make_client: Callable[..., Any]) -> None:
    client = await make_client(
        replace(OFF, webhook=Rate(per_second=0.1, burst=3), trusted_proxies=LOOPBACK)
    )
    address = {"X-Forwarded-For": unique_ip()}
    statuses = [
        (await client.post("/webhooks/telegram/nobody", data=b"{}", headers=address)).status
        for _ in range(4)
    ]
    assert statuses == [404, 404, 404, 429]
    # Another bot's webhook from the same address has a bucket of its own.
    resp = await client.post("/webhooks/generic/other", data=b"{}", headers=address)
    assert resp.status == 404


async def test_health_and_the_openapi_document_are_never_limited(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(replace(OFF, ip=Rate(per_second=0.1, burst=1)))
    for path in ["/health", "/api/openapi.json"] * 3:
        assert (await client.get(path)).status == 200


def test_the_429_answer_is_documented_for_every_limited_route() -> None:
    from gateway import openapi

    doc = openapi.build()
    limited = [
        ("/api/v1/bots/{bot}/messages", "post"),
        ("/api/v1/bots/{bot}/send", "post"),
        ("/api/v1/bots/{bot}/sessions/{session_id}/messages", "get"),
        ("/api/v1/visitors", "post"),
        ("/ws/{bot}", "get"),
        ("/webhooks/telegram/{bot}", "post"),
        ("/webhooks/generic/{bot}", "post"),
        ("/chat/{bot}", "get"),
    ]
    for path, method in limited:
        assert "429" in doc["paths"][path][method]["responses"], f"{method} {path}"
    assert "429" not in doc["paths"]["/health"]["get"]["responses"]
