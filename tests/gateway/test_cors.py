"""CORS: listed origins may call the API from a browser page; others get no CORS header."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from gateway.app import create_app
from gateway.auth import AuthConfig
from gateway.cors import CorsConfig, normalize_origin
from gateway.rate_limits import RateLimitConfig
from storage.base import Rate
from tests.gateway.credentials import bearer, hs256_token

Client = TestClient  # type: ignore[type-arg]
APP_ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


@pytest.fixture
async def cors_client(aiohttp_client: Any, settings: Settings, auth_config: AuthConfig) -> Client:
    app = create_app(
        replace(settings, kb_ingest_on_load=False),
        auth=auth_config,
        limits=RateLimitConfig(None, Rate(per_second=0.1, burst=2), None, None, None),
        cors=CorsConfig.from_env(
            {"BOTSERVER_CORS_ORIGINS": f"{APP_ORIGIN}, http://localhost:3000"}
        ),
    )
    client: Client = await aiohttp_client(app)
    return client


async def test_a_preflight_from_a_listed_origin_is_answered(cors_client: Client) -> None:
    resp = await cors_client.options(
        "/api/v1/bots/default/messages", headers={"Origin": APP_ORIGIN, **PREFLIGHT}
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in resp.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in resp.headers  # bearer tokens, no cookies


async def test_a_preflight_from_another_origin_is_refused(cors_client: Client) -> None:
    resp = await cors_client.options(
        "/api/v1/bots/default/messages", headers={"Origin": "https://evil.example", **PREFLIGHT}
    )
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"
    assert not [h for h in resp.headers if h.lower().startswith("access-control-")]


async def test_answers_carry_the_origin_only_for_a_listed_one(cors_client: Client) -> None:
    app = bearer(hs256_token(roles=["app"]))
    ok = await cors_client.post(
        "/api/v1/bots/default/messages",
        json={"text": "hi", "user_id": "u-cors"},
        headers={"Origin": APP_ORIGIN, **app},
    )
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Retry-After" in ok.headers["Access-Control-Expose-Headers"]
    assert "Origin" in ok.headers["Vary"]

    other = await cors_client.post(
        "/api/v1/bots/default/messages",
        json={"text": "hi", "user_id": "u-cors"},
        headers={"Origin": "https://evil.example", **app},
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers["Vary"]  # a cache keeps the two apart

    same_origin = await cors_client.get("/api/openapi.json")  # no Origin: none needed
    assert "Access-Control-Allow-Origin" not in same_origin.headers
    assert "Origin" in same_origin.headers["Vary"]


async def test_a_refusal_is_readable_by_the_listed_origin(cors_client: Client) -> None:
    """A 401 or a 429 carries the CORS headers, so the page can read why and when."""
    unauthorized = await cors_client.post(
        "/api/v1/bots/default/messages", json={"text": "hi"}, headers={"Origin": APP_ORIGIN}
    )
    assert unauthorized.status == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    statuses = []
    for _ in range(3):
        resp = await cors_client.post("/api/v1/visitors", headers={"Origin": APP_ORIGIN})
        statuses.append(resp.status)
    assert statuses == [201, 201, 429]
    assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert resp.headers["Retry-After"]


async def test_an_event_stream_carries_the_cors_headers(cors_client: Client) -> None:
    resp = await cors_client.post(
        "/api/v1/bots/default/messages",
        json={"text": "hi", "user_id": "u-sse"},
        headers={
            "Origin": APP_ORIGIN,
            "Accept": "text/event-stream",
            **bearer(hs256_token(roles=["app"])),
        },
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "event: done" in await resp.text()


async def test_without_a_list_no_cors_header_is_sent(
    aiohttp_client: Any, settings: Settings, auth_config: AuthConfig
) -> None:
    app = create_app(
        replace(settings, kb_ingest_on_load=False), auth=auth_config, cors=CorsConfig()
    )
    client: Client = await aiohttp_client(app)
    pre = await client.options(
        "/api/v1/bots/default/messages", headers={"Origin": APP_ORIGIN, **PREFLIGHT}
    )
    assert pre.status == 403
    resp = await client.post("/api/v1/visitors", headers={"Origin": APP_ORIGIN})
    assert resp.status == 201
    assert not [h for h in resp.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com/", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_origins_are_read_as_browsers_send_them(raw: str, origin: str) -> None:
    assert normalize_origin(raw) == origin


@pytest.mark.parametrize(
    "raw", ["*", "app.example.com", "https://app.example.com/path", "ftp://x.example", "null"]
)
def test_a_wrong_origin_is_refused_at_start(raw: str) -> None:
    with pytest.raises(ValueError, match="BOTSERVER_CORS_ORIGINS"):
        CorsConfig.from_env({"BOTSERVER_CORS_ORIGINS": raw})
