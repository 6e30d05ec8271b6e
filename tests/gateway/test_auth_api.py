"""Who may do what on the web API: visitors, JWT users, app and admin credentials.

A user is always its credential's user, never the body's; only an app (or an
admin) names the user of a message; a session is read or continued only by
its own user; admin endpoints refuse everyone else, and with nothing
configured refuse everyone.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from config.settings import Settings
from gateway.app import create_app
from gateway.auth import AuthConfig
from gateway.keys import STORES
from tests.databases import temporary_database
from tests.gateway.credentials import ADMIN_TOKEN, bearer, hs256_token

MESSAGES = "/api/v1/bots/{bot}/messages"
HISTORY = "/api/v1/bots/{bot}/sessions/{session}/messages"
ADMIN = bearer(ADMIN_TOKEN)
APP = bearer(hs256_token(roles=["app"]))


async def visitor(client: TestClient) -> tuple[str, str]:
    resp = await client.post("/api/v1/visitors")
    assert resp.status == 201
    body = await resp.json()
    return body["visitor_token"], body["user_id"]


async def say(
    client: TestClient, headers: dict[str, str], text: str, **fields: Any
) -> dict[str, Any]:
    resp = await client.post(
        MESSAGES.format(bot="default"), json={"text": text, **fields}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def history(client: TestClient, headers: dict[str, str], session: str, query: str = ""):  # type: ignore[no-untyped-def]
    return await client.get(HISTORY.format(bot="default", session=session) + query, headers=headers)


async def test_a_message_without_a_credential_is_401(anonymous: TestClient) -> None:
    url = MESSAGES.format(bot="default")
    for headers in ({}, bearer("garbage"), {"Authorization": "Basic dTpw"}, bearer("bv1.x.y")):
        resp = await anonymous.post(url, json={"user_id": "u", "text": "hi"}, headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["error"] == "unauthorized"
    resp = await anonymous.get(HISTORY.format(bot="default", session=uuid.uuid4()) + "?user_id=u")
    assert resp.status == 401


async def test_a_visitor_is_its_token_and_never_the_body(anonymous: TestClient) -> None:
    token, user_id = await visitor(anonymous)
    assert user_id.startswith("web-") and token.startswith("bv1.")
    first = await say(anonymous, bearer(token), "hi", user_id="someone-else")
    session = first["session_id"]

    mine = await history(anonymous, bearer(token), session)
    assert mine.status == 200
    assert (await mine.json())["messages"][0]["text"] == "hi"
    # The session is the visitor's, not the body's user's: an app sees whose it is.
    assert (await history(anonymous, APP, session, f"?user_id={user_id}")).status == 200
    assert (await history(anonymous, APP, session, "?user_id=someone-else")).status == 404

    # Another visitor can neither read nor continue it.
    other, _ = await visitor(anonymous)
    assert (await history(anonymous, bearer(other), session)).status == 404
    assert (await history(anonymous, bearer(other), session, f"?user_id={user_id}")).status == 404
    resp = await anonymous.post(
        MESSAGES.format(bot="default"),
        json={"text": "ada", "session_id": session, "user_id": user_id},
        headers=bearer(other),
    )
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_session"
    # A token with its signature changed is nobody.
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (await history(anonymous, bearer(forged), session)).status == 401


async def test_a_jwt_user_is_its_subject_never_the_body(anonymous: TestClient) -> None:
    sub = f"jwt-{uuid.uuid4().hex[:8]}"
    user = bearer(hs256_token(sub=sub))
    session = (await say(anonymous, user, "hi", user_id="someone-else"))["session_id"]
    assert (await history(anonymous, user, session)).status == 200
    assert (await history(anonymous, APP, session, f"?user_id={sub}")).status == 200
    stranger = bearer(hs256_token(sub="another-subject"))
    assert (await history(anonymous, stranger, session)).status == 404


async def test_a_jwt_naming_its_bots_is_refused_on_the_others(anonymous: TestClient) -> None:
    for claim in ("default", ["shop", "default"]):
        scoped = bearer(hs256_token(sub=f"jwt-{uuid.uuid4().hex[:8]}", bots=claim))
        assert "session_id" in await say(anonymous, scoped, "hi")
    only_shop = bearer(hs256_token(sub="jwt-shop", bots=["shop"]))
    resp = await anonymous.post(
        MESSAGES.format(bot="default"), json={"text": "hi"}, headers=only_shop
    )
    assert resp.status == 403
    assert "for bot 'shop', not 'default'" in (await resp.json())["message"]
    for malformed in ([], "../etc", 7, ["default", 3]):
        resp = await anonymous.post(
            MESSAGES.format(bot="default"),
            json={"text": "hi"},
            headers=bearer(hs256_token(bots=malformed)),
        )
        assert resp.status == 401, malformed


@pytest.mark.parametrize(
    "token",
    [
        hs256_token(exp=int(time.time()) - 3600),
        hs256_token(nbf=int(time.time()) + 3600),
        hs256_token(aud="another-app"),
        hs256_token(iss="https://evil.example.test"),
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.",  # alg none
    ],
    ids=["expired", "not-yet-valid", "wrong-audience", "wrong-issuer", "alg-none"],
)
async def test_refused_jwts_are_401(anonymous: TestClient, token: str) -> None:
    resp = await anonymous.post(
        MESSAGES.format(bot="default"), json={"text": "hi"}, headers=bearer(token)
    )
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"


async def test_admin_endpoints_need_the_admin_role(anonymous: TestClient) -> None:
    store = anonymous.app[STORES].api_keys
    _, admin_key = await store.create(bot_id="default", role="admin")
    _, app_key = await store.create(bot_id="default", role="app")
    token, _ = await visitor(anonymous)
    refused = {
        "nothing": ({}, 403),
        "visitor": (bearer(token), 403),
        "user jwt": (bearer(hs256_token(sub="u")), 403),
        "app jwt": (APP, 403),
        "app key": (bearer(app_key), 403),
        "a wrong admin token": (bearer(ADMIN_TOKEN + "x"), 401),
    }
    for name, (headers, status) in refused.items():
        for method, path in (("POST", "reload"), ("GET", "channels"), ("GET", "keys")):
            resp = await anonymous.request(method, f"/api/v1/bots/default/{path}", headers=headers)
            assert resp.status == status, (name, path)
    admins = [ADMIN, bearer(hs256_token(sub="ops", roles=["admin"])), bearer(admin_key)]
    for headers in admins:
        assert (await anonymous.get("/api/v1/bots/default/channels", headers=headers)).status == 200
        assert (await anonymous.post("/api/v1/bots/default/reload", headers=headers)).status == 200
    # An admin key of one bot is nobody's admin elsewhere.
    resp = await anonymous.post("/api/v1/bots/nodialog/reload", headers=bearer(admin_key))
    assert resp.status == 403


async def test_admin_is_disabled_when_nothing_is_configured(
    aiohttp_client: Any, settings: Settings, server_database_url: str, tmp_path: Path
) -> None:
    """No admin token, no JWTs and no admin key: closed, even to a loopback caller."""
    async with temporary_database(server_database_url, "botserver_noadmin") as url:
        bare = Settings(bots_dir=settings.bots_dir, data_dir=tmp_path, database_url=url)
        client = await aiohttp_client(create_app(bare, auth=AuthConfig()))
        for method, path in (("POST", "reload"), ("GET", "channels"), ("GET", "keys")):
            resp = await client.request(method, f"/api/v1/bots/default/{path}")
            assert resp.status == 403
            body = await resp.json()
            assert body["error"] == "forbidden" and "disabled" in body["message"]
        # A JWT is not accepted either: none is configured.
        resp = await client.post(
            "/api/v1/bots/default/reload", headers=bearer(hs256_token(roles=["admin"]))
        )
        assert resp.status == 401
        await client.close()


async def test_keys_are_created_shown_once_listed_and_revoked(
    anonymous: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = await anonymous.post(
        "/api/v1/bots/default/keys", json={"role": "app", "name": "backend"}, headers=ADMIN
    )
    assert resp.status == 201
    created = await resp.json()
    key = created["key"]
    assert created["role"] == "app" and created["bot"] == "default" and key.startswith("bsk_")

    listed = await (await anonymous.get("/api/v1/bots/default/keys", headers=ADMIN)).text()
    assert created["id"] in listed and key not in listed and key.split("_", 2)[2] not in listed

    # The key acts for its users, on its bot only.
    app = bearer(key)
    user = f"u-{uuid.uuid4().hex[:8]}"
    session = (await say(anonymous, app, "hi", user_id=user))["session_id"]
    assert (await history(anonymous, app, session, f"?user_id={user}")).status == 200
    other_bot = await anonymous.post(
        MESSAGES.format(bot="nodialog"), json={"user_id": user, "text": "hi"}, headers=app
    )
    assert other_bot.status == 403

    # Checked in the table once, then remembered: the next requests read no row.
    keys = anonymous.app[STORES].api_keys
    assert keys.subscribed
    misses = keys.misses
    for _ in range(3):
        assert (await history(anonymous, app, session, f"?user_id={user}")).status == 200
    assert keys.misses == misses

    delete = f"/api/v1/bots/default/keys/{created['id']}"
    assert (await anonymous.delete(delete, headers=ADMIN)).status == 200
    refused = await anonymous.post(
        MESSAGES.format(bot="default"), json={"user_id": user, "text": "hi"}, headers=app
    )
    assert refused.status == 401 and "revoked" in (await refused.json())["message"]
    assert (await anonymous.delete(delete, headers=ADMIN)).status == 409

    rows = await anonymous.app[STORES].pool.fetch("SELECT * FROM api_keys")
    assert not any(key in str(dict(r)) for r in rows)
    assert key not in caplog.text and ADMIN_TOKEN not in caplog.text

    for bad in ({"role": "owner"}, {"role": "user"}, {"role": "app", "user_id": "u"}, {}):
        resp = await anonymous.post("/api/v1/bots/default/keys", json=bad, headers=ADMIN)
        assert resp.status == 400, bad


async def test_an_agent_key_sends_no_user_messages(anonymous: TestClient) -> None:
    _, agent = await anonymous.app[STORES].api_keys.create(bot_id="default", role="agent")
    resp = await anonymous.post(
        MESSAGES.format(bot="default"), json={"user_id": "u", "text": "hi"}, headers=bearer(agent)
    )
    assert resp.status == 403


# -- the WebSocket ------------------------------------------------------------------------------


async def test_a_socket_without_a_credential_is_closed(anonymous: TestClient) -> None:
    for first in (
        {"type": "message", "text": "hi", "user_id": "u"},
        {"type": "auth"},
        {"type": "auth", "token": "garbage"},
        {"type": "auth", "token": hs256_token(exp=int(time.time()) - 3600)},
    ):
        async with anonymous.ws_connect("/ws/default") as ws:
            await ws.send_json(first)
            frame = await ws.receive_json(timeout=5)
            assert frame["type"] == "error" and frame["error"] == "unauthorized", first
            closing = await ws.receive(timeout=5)
            assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
            assert ws.close_code == 1008


async def test_credentials_and_ids_do_not_go_in_the_socket_url(anonymous: TestClient) -> None:
    token, user_id = await visitor(anonymous)
    for query in (f"user_id={user_id}", f"token={token}", f"session_id={uuid.uuid4()}"):
        resp = await anonymous.get(
            f"/ws/default?{query}", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
        )
        assert resp.status == 400
    resp = await anonymous.get(
        "/ws/default", headers={"Upgrade": "websocket", "Connection": "Upgrade", **bearer("x")}
    )
    assert resp.status == 401


async def test_a_visitor_socket_is_its_own_and_cannot_resume_anothers(
    anonymous: TestClient,
) -> None:
    token, user_id = await visitor(anonymous)
    async with anonymous.ws_connect("/ws/default") as ws:
        await ws.send_json({"type": "auth", "token": token})
        assert await ws.receive_json(timeout=5) == {"type": "ready", "user_id": user_id}
        await ws.send_json({"type": "message", "text": "hi", "user_id": "someone-else"})
        frames = [await ws.receive_json(timeout=10) for _ in range(2)]
        assert frames[-1]["type"] == "done"
        session = frames[-1]["session_id"]
    assert (await history(anonymous, APP, session, f"?user_id={user_id}")).status == 200

    other, other_user = await visitor(anonymous)
    async with anonymous.ws_connect("/ws/default?format=html") as ws:
        await ws.send_json({"type": "auth", "token": other, "session_id": session})
        refusal = await ws.receive_str(timeout=5)
        assert 'data-error="unknown_session"' in refusal
        await ws.send_json({"type": "message", "text": "hi", "session_id": session})
        assert "hi" in await ws.receive_str(timeout=5)  # the echo of its own message
        assert 'data-error="unknown_session"' in await ws.receive_str(timeout=10)

    # The first visitor resumes its own session (with the token, never a URL).
    async with anonymous.ws_connect("/ws/default") as ws:
        await ws.send_json({"type": "auth", "token": token, "session_id": session})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        await ws.send_json({"type": "message", "text": "ada lovelace"})
        frames = [await ws.receive_json(timeout=10) for _ in range(3)]
        assert frames[0]["text"] == "Nice to meet you, Ada Lovelace!"
        assert frames[-1] == {"type": "done", "session_id": session}
    assert other_user != user_id


def test_the_configuration_comes_from_the_environment_and_keeps_its_secrets() -> None:
    env = {
        "BOTSERVER_ADMIN_TOKEN": "admin-secret-value",
        "BOTSERVER_JWT_SECRET": "j" * 40,
        "BOTSERVER_JWKS_URL": "https://id.example.test/jwks",
        "BOTSERVER_JWT_ISSUER": "https://id.example.test/",
        "BOTSERVER_JWT_AUDIENCE": "botserver",
        "BOTSERVER_JWT_ROLES_CLAIM": "groups",
        "BOTSERVER_JWT_LEEWAY": "5",
        "BOTSERVER_JWKS_REFETCH_INTERVAL": "120",
        "BOTSERVER_VISITOR_SECRET": "v" * 40,
    }
    config = AuthConfig.from_env(env)
    assert config.admin_token == "admin-secret-value"
    assert config.jwt.secret == b"j" * 40 and config.jwt.audience == "botserver"
    assert (config.jwt.roles_claim, config.jwt.leeway, config.jwt.jwks_refetch_interval) == (
        "groups",
        5.0,
        120.0,
    )
    assert config.visitor_secret == b"v" * 40
    assert "admin-secret-value" not in repr(config) and "jjjj" not in repr(config)
    assert AuthConfig.from_env({}) == AuthConfig()
    oidc = AuthConfig.from_env(
        {
            "BOTSERVER_OIDC_ISSUER": "https://id.example.test/realm",
            "BOTSERVER_JWT_AUDIENCE": "botserver",
            "BOTSERVER_JWT_BOTS_CLAIM": "tenants",
        }
    ).jwt
    assert (oidc.discovery, oidc.issuer, oidc.jwks_url, oidc.bots_claim) == (
        True,
        "https://id.example.test/realm",
        None,
        "tenants",
    )
    assert oidc.enabled and oidc.remote_keys

    for bad in (
        {"BOTSERVER_JWT_SECRET": "short"},
        {"BOTSERVER_JWKS_URL": "https://id.example.test/jwks"},  # no issuer nor audience
        {"BOTSERVER_VISITOR_SECRET": "short"},
        {"BOTSERVER_JWT_LEEWAY": "soon"},
        {"BOTSERVER_OIDC_ISSUER": "https://id.example.test/"},  # no audience
        {
            "BOTSERVER_OIDC_ISSUER": "https://id.example.test/",
            "BOTSERVER_JWT_ISSUER": "https://other.example.test/",
            "BOTSERVER_JWT_AUDIENCE": "botserver",
        },
    ):
        with pytest.raises(ValueError):
            AuthConfig.from_env(bad)


async def test_oversized_credentials_and_unknown_roles_are_clear_4xx(
    anonymous: TestClient,
) -> None:
    url = MESSAGES.format(bot="default")
    # A long credential of no kind we know, just under the server's header limit: 401, JSON.
    resp = await anonymous.post(url, json={"text": "hi"}, headers=bearer("x" * 8_100))
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"
    # Over the server's header limit: refused by the HTTP parser with a 4xx, nothing run.
    resp = await anonymous.post(url, json={"text": "hi"}, headers=bearer("x" * 20_000))
    assert 400 <= resp.status < 500
    # A key of a role we do not have is refused, naming the roles there are.
    resp = await anonymous.post(
        "/api/v1/bots/default/keys", json={"role": "wizard", "name": "x"}, headers=ADMIN
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "bad_request" and "admin, agent, app, user" in body["message"]
    # A JWT naming only roles we do not have is a user's: it may not name another user.
    user = f"jwt-{uuid.uuid4().hex[:8]}"
    wizard = bearer(hs256_token(sub=user, roles=["wizard", "superuser"]))
    session = (await say(anonymous, wizard, "hi", user_id="someone-else"))["session_id"]
    assert (await history(anonymous, wizard, session)).status == 200
    resp = await anonymous.post(
        "/api/v1/bots/default/keys", json={"role": "app", "name": "x"}, headers=wizard
    )
    assert resp.status == 403
