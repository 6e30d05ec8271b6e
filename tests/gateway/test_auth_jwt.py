"""JWT checks: what is refused (forged, expired, not yet valid, another issuer or audience,
``alg=none``, HS256 over the RSA public key), and the issuer's JWKS fetched from a server
on 127.0.0.1, refetched once on an unknown ``kid`` and no more often than allowed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.auth_jwt import InvalidToken, JwtSettings, JwtVerifier, KeysUnavailable

SECRET = b"a-secret-of-sixty-four-bytes-so-that-hs512-has-no-warning-either"
ISSUER = "https://id.example.test/"
AUDIENCE = "botserver"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    # Made as the module is imported (the tables below): valid for the whole run.
    base: dict[str, Any] = {"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 6 * 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token signed by hand with HMAC-SHA256 (or unsigned): what pyjwt would refuse to make."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@dataclass
class Signer:
    """An issuer's key pair, with the JWK it publishes."""

    kid: str
    private: Any
    algorithm: str
    jwk: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        public = self.private.public_key()
        to_jwk = RSAAlgorithm.to_jwk if self.algorithm.startswith("RS") else ECAlgorithm.to_jwk
        self.jwk = {**to_jwk(public, as_dict=True), "kid": self.kid, "use": "sig"}

    def sign(self, payload: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            payload, self.private, algorithm=self.algorithm, headers={"kid": self.kid, **header}
        )

    @property
    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def rsa_signer(kid: str) -> Signer:
    return Signer(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def ec_signer(kid: str) -> Signer:
    return Signer(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")


class JwksServer:
    """The issuer's JWKS endpoint on 127.0.0.1; counts fetches, keys can be rotated."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response({"keys": self.keys})


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[JwksServer, str]]:
    state = JwksServer()
    app = web.Application()
    app.router.add_get("/jwks.json", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield state, str(server.make_url("/jwks.json"))
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@pytest.fixture
def oidc(
    jwks: tuple[JwksServer, str], session: aiohttp.ClientSession
) -> Callable[..., JwtVerifier]:
    def make(**settings: Any) -> JwtVerifier:
        return JwtVerifier(
            JwtSettings(jwks_url=jwks[1], issuer=ISSUER, audience=AUDIENCE, **settings),
            session=session,
        )

    return make


@pytest.fixture
def hs256() -> JwtVerifier:
    return JwtVerifier(
        JwtSettings(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, leeway=0), session=None
    )


async def test_a_valid_hs256_token_gives_its_claims(hs256: JwtVerifier) -> None:
    token = jwt.encode(claims(roles=["app"]), SECRET, algorithm="HS256")
    verified = await hs256.verify(token)
    assert verified["sub"] == "user-1" and verified["roles"] == ["app"]


REFUSED_HS256 = {
    "forged": (
        claims(),
        b"another-secret-of-sixty-four-bytes-so-that-hs512-has-no-warning!",
        "HS256",
    ),
    "expired": (claims(exp=int(time.time()) - 3600), SECRET, "HS256"),
    "not-yet-valid": (claims(nbf=int(time.time()) + 3600), SECRET, "HS256"),
    "wrong-issuer": (claims(iss="https://evil.example.test/"), SECRET, "HS256"),
    "wrong-audience": (claims(aud="another-app"), SECRET, "HS256"),
    "no-expiry": (claims(exp=None), SECRET, "HS256"),
    "no-subject": (claims(sub=None), SECRET, "HS256"),
    "no-issuer": (claims(iss=None), SECRET, "HS256"),
    "no-audience": (claims(aud=None), SECRET, "HS256"),
    "hs512": (claims(), SECRET, "HS512"),  # the key's algorithm is HS256, not the header's
}


@pytest.mark.parametrize("case", REFUSED_HS256.values(), ids=REFUSED_HS256.keys())
async def test_hs256_tokens_that_are_refused(
    hs256: JwtVerifier, case: tuple[dict[str, Any], bytes, str]
) -> None:
    payload, key, algorithm = case
    with pytest.raises(InvalidToken):
        await hs256.verify(jwt.encode(payload, key, algorithm=algorithm))


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c", "not a token", "...."])
async def test_malformed_tokens_are_refused(hs256: JwtVerifier, token: str) -> None:
    with pytest.raises(InvalidToken):
        await hs256.verify(token)


async def test_alg_none_is_refused(hs256: JwtVerifier, oidc: Callable[..., JwtVerifier]) -> None:
    for header in ({"alg": "none", "typ": "JWT"}, {"alg": "None"}, {"alg": "none", "kid": "k1"}):
        with pytest.raises(InvalidToken, match="algorithm"):
            await hs256.verify(hand_signed(header, claims(), None))
    verifier = oidc()
    with pytest.raises((InvalidToken, KeysUnavailable)):
        await verifier.verify(hand_signed({"alg": "none", "kid": "k1"}, claims(), None))


async def test_rs256_and_es256_from_the_jwks(
    jwks: tuple[JwksServer, str], oidc: Callable[..., JwtVerifier]
) -> None:
    server, _ = jwks
    rsa_key, ec_key = rsa_signer("rsa-1"), ec_signer("ec-1")
    server.keys = [rsa_key.jwk, ec_key.jwk]
    verifier = oidc()
    assert (await verifier.verify(rsa_key.sign(claims(sub="r"))))["sub"] == "r"
    assert (await verifier.verify(ec_key.sign(claims(sub="e"))))["sub"] == "e"
    assert server.fetches == 1  # cached

    for refused in (
        rsa_key.sign(claims(exp=int(time.time()) - 3600)),
        rsa_key.sign(claims(aud="another-app")),
        rsa_key.sign(claims(iss="https://evil.example.test/")),
        rsa_signer("rsa-1").sign(claims()),  # forged: another key under the same kid
    ):
        with pytest.raises(InvalidToken):
            await verifier.verify(refused)


async def test_hs256_signed_with_the_rsa_public_key_is_refused(
    jwks: tuple[JwksServer, str], oidc: Callable[..., JwtVerifier], session: aiohttp.ClientSession
) -> None:
    """The algorithm confusion: the published RSA key used as an HMAC secret."""
    server, url = jwks
    rsa_key = rsa_signer("rsa-1")
    server.keys = [rsa_key.jwk]
    pem = rsa_key.public_pem
    confused = hand_signed({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), pem)
    with pytest.raises(InvalidToken, match="not its key's"):
        await oidc().verify(confused)
    # Without a kid, and with a secret configured too, HS256 means the secret, not the key.
    both = JwtVerifier(
        JwtSettings(secret=SECRET, jwks_url=url, issuer=ISSUER, audience=AUDIENCE),
        session=session,
    )
    with pytest.raises(InvalidToken):
        await both.verify(hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), pem))
    with pytest.raises(InvalidToken, match="not its key's"):
        await both.verify(confused)
    # An ES256 header over the RSA key's kid: the key decides, so refused too.
    ec_over_rsa = ec_signer("rsa-1").sign(claims())
    with pytest.raises(InvalidToken, match="not its key's"):
        await both.verify(ec_over_rsa)


async def test_an_unknown_kid_refetches_the_jwks_once_and_no_more_often(
    jwks: tuple[JwksServer, str], oidc: Callable[..., JwtVerifier]
) -> None:
    server, _ = jwks
    old, new = rsa_signer("2026-01"), rsa_signer("2026-02")
    server.keys = [old.jwk]
    verifier = oidc(jwks_refetch_interval=0.5)
    await verifier.verify(old.sign(claims()))
    assert server.fetches == 1

    # The issuer rotates: a token of the new key makes one fetch, however many arrive at once.
    await asyncio.sleep(0.5)
    server.keys = [new.jwk]
    results = await asyncio.gather(*(verifier.verify(new.sign(claims())) for _ in range(10)))
    assert all(r["sub"] == "user-1" for r in results)
    assert server.fetches == 2

    # A kid nobody publishes, again and again: refused, with no fetch within the interval.
    stranger = rsa_signer("unknown")
    for _ in range(20):
        with pytest.raises(InvalidToken, match="no key 'unknown'"):
            await verifier.verify(stranger.sign(claims()))
    assert server.fetches == 2
    await asyncio.sleep(0.5)
    with pytest.raises(InvalidToken):
        await verifier.verify(stranger.sign(claims()))
    assert server.fetches == 3  # the interval passed: one more look
    # The key dropped by the rotation is gone from the cache too.
    with pytest.raises(InvalidToken):
        await verifier.verify(old.sign(claims()))


async def test_an_unreachable_jwks_is_unavailable_not_open(
    jwks: tuple[JwksServer, str], oidc: Callable[..., JwtVerifier]
) -> None:
    server, _ = jwks
    server.status = 500
    signer = rsa_signer("k")
    verifier = oidc(jwks_refetch_interval=60)
    for _ in range(3):
        with pytest.raises(KeysUnavailable):
            await verifier.verify(signer.sign(claims()))
    assert server.fetches == 1  # a down issuer is not hammered


def test_settings_that_would_accept_too_much_are_refused() -> None:
    with pytest.raises(ValueError, match="ISSUER and BOTSERVER_JWT_AUDIENCE"):
        JwtSettings(jwks_url="https://id.example.test/jwks")
    with pytest.raises(ValueError, match="AUDIENCE"):
        JwtSettings(jwks_url="https://id.example.test/jwks", issuer=ISSUER)
    with pytest.raises(ValueError, match="32 bytes"):
        JwtSettings(secret=b"short")


async def test_the_jwks_is_found_through_the_issuers_discovery_document(
    session: aiohttp.ClientSession,
) -> None:
    keys = JwksServer()
    signer = rsa_signer("disc-1")
    keys.keys = [signer.jwk]
    named: dict[str, Any] = {}

    async def configuration(request: web.Request) -> web.Response:
        return web.json_response(named)

    app = web.Application()
    app.router.add_get("/realm/.well-known/openid-configuration", configuration)
    app.router.add_get("/realm/certs", keys.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        issuer = str(server.make_url("/realm"))
        named.update(issuer=issuer, jwks_uri=str(server.make_url("/realm/certs")))
        settings = JwtSettings(discovery=True, issuer=issuer, audience=AUDIENCE)
        verifier = JwtVerifier(settings, session=session)
        token = signer.sign(claims(sub="d", iss=issuer))
        assert (await verifier.verify(token))["sub"] == "d"
        assert keys.fetches == 1

        # A document that names another issuer is not believed: no keys, no tokens.
        named["issuer"] = "https://evil.example.test/"
        liar = JwtVerifier(settings, session=session)
        with pytest.raises(KeysUnavailable, match="names issuer"):
            await liar.verify(token)
        assert keys.fetches == 1
    finally:
        await server.close()


def test_discovery_needs_an_audience_and_excludes_a_jwks_url() -> None:
    with pytest.raises(ValueError, match="AUDIENCE"):
        JwtSettings(discovery=True, issuer=ISSUER)
    with pytest.raises(ValueError, match="not both"):
        JwtSettings(discovery=True, issuer=ISSUER, audience=AUDIENCE, jwks_url="https://x/j")


# -- tokens checked before ------------------------------------------------------------------


async def test_a_token_checked_before_is_not_checked_again_until_it_expires(
    jwks: tuple[JwksServer, str], oidc: Callable[..., JwtVerifier], monkeypatch: Any
) -> None:
    server, _ = jwks
    signer = rsa_signer("k1")
    server.keys = [signer.jwk]
    verifier = oidc(leeway=0)
    token = signer.sign(claims(exp=int(time.time()) + 2))
    await verifier.verify(token)  # the JWKS is fetched meanwhile: not remembered yet
    first = await verifier.verify(token)
    checks = 0
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        nonlocal checks
        checks += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)  # pyjwt's, to count its checks
    for _ in range(50):
        assert await verifier.verify(token) is first
    assert checks == 0  # remembered: no signature checked again
    await asyncio.sleep(2.1)
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)  # its expiry is checked every time
    # A forged token is never remembered: refused each time, checked each time.
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(3):
        with pytest.raises(InvalidToken):
            await verifier.verify(forged)
    assert checks == 3


async def test_a_token_of_a_key_the_issuer_dropped_is_refused_after_the_refetch(
    jwks: tuple[JwksServer, str], oidc: Callable[..., JwtVerifier]
) -> None:
    server, _ = jwks
    old, new = rsa_signer("old"), rsa_signer("new")
    server.keys = [old.jwk]
    verifier = oidc(jwks_refetch_interval=0)
    token = old.sign(claims())
    assert (await verifier.verify(token))["sub"] == "user-1"
    server.keys = [new.jwk]  # the issuer rotates, dropping the old key
    await verifier.verify(new.sign(claims()))  # an unknown kid: the JWKS is fetched again
    with pytest.raises(InvalidToken, match="no key 'old'"):
        await verifier.verify(token)  # remembered before, but checked against the new keys
