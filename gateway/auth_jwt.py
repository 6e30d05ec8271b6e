"""JWTs: HS256 with a configured secret, or RS/ES keys from an OIDC issuer's JWKS.

The key decides the algorithm, never the token's header: a secret verifies
HS256 only, an RSA key of the JWKS its ``alg`` (RS256 when it names none), an
EC key the algorithm of its curve. A header naming another algorithm
(``none``, or HS256 over an RSA key's ``kid``: the algorithm confusion) is
refused before any signature is checked. ``exp`` and ``sub`` are required;
``nbf``, ``iss`` and ``aud`` are checked (the issuer and audience are
required with a JWKS, where any application of the issuer could otherwise
present its tokens).

The JWKS is fetched with aiohttp on first use and kept for ``jwks_max_age``;
a ``kid`` it lacks (the issuer rotated its keys) makes one refetch, at most
once every ``jwks_refetch_interval`` seconds, however many tokens name it.
With ``discovery`` the JWKS's address is the ``jwks_uri`` of the issuer's
OpenID Connect discovery document (``{issuer}/.well-known/openid-configuration``),
read with each fetch of the keys; a document naming another issuer is refused,
as OpenID Connect Discovery requires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import orjson

log = logging.getLogger(__name__)

HMAC_ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
# The asymmetric algorithms a JWKS key may name; a key without one gets its type's default.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
MAX_JWKS_BYTES = 256 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"
MAX_VERIFIED = 10_000  # tokens remembered as checked


class InvalidToken(Exception):
    """The token is refused; the message says why (it never repeats the token)."""


class KeysUnavailable(Exception):
    """The issuer's keys could not be fetched, so no token of it can be checked now."""


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """How tokens are verified; see :meth:`gateway.auth.AuthConfig.from_env` for the names."""

    secret: bytes | None = field(default=None, repr=False)
    jwks_url: str | None = None
    discovery: bool = False  # the JWKS's address from the issuer's discovery document
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    roles_claim: str = "roles"
    bots_claim: str = "bots"
    jwks_max_age: float = 3600.0
    jwks_refetch_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.secret is not None and len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"BOTSERVER_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
        if self.jwks_url and not (self.issuer and self.audience):
            raise ValueError(
                "BOTSERVER_JWKS_URL needs BOTSERVER_JWT_ISSUER and BOTSERVER_JWT_AUDIENCE:"
                " without them any token of that issuer would be accepted"
            )
        if self.discovery and not (self.issuer and self.audience):
            raise ValueError(
                "BOTSERVER_OIDC_ISSUER needs BOTSERVER_JWT_AUDIENCE: without it any token of"
                " that issuer would be accepted"
            )
        if self.discovery and self.jwks_url:
            raise ValueError("set BOTSERVER_OIDC_ISSUER or BOTSERVER_JWKS_URL, not both")

    @property
    def enabled(self) -> bool:
        return self.secret is not None or bool(self.jwks_url) or self.discovery

    @property
    def remote_keys(self) -> bool:
        """Whether keys come from the issuer (a JWKS, named or discovered)."""
        return bool(self.jwks_url) or self.discovery


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    algorithm: str
    key: Any


def _algorithm_of(jwk: Mapping[str, Any]) -> str | None:
    """The one algorithm a JWK verifies, from its type (and ``alg`` if it names one)."""
    kty, named = jwk.get("kty"), jwk.get("alg")
    if jwk.get("use", "sig") != "sig":
        return None
    if kty == "RSA":
        algorithm = named or "RS256"
        return algorithm if algorithm in _RSA_ALGORITHMS else None
    if kty == "EC":
        algorithm = _EC_ALGORITHMS.get(str(jwk.get("crv")))
        return algorithm if algorithm is not None and named in (None, algorithm) else None
    return None  # symmetric ("oct") and other keys have no place in a remote JWKS


def _parse_jwks(data: object) -> list[_Key]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS: no 'keys' list")
    keys = []
    for jwk in data["keys"]:
        if not isinstance(jwk, dict):
            continue
        algorithm = _algorithm_of(jwk)
        if algorithm is None:
            continue
        try:
            parsed = jwt.PyJWK(jwk, algorithm=algorithm)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as e:
            log.warning("JWKS key %r skipped: %s", jwk.get("kid"), e)
            continue
        kid = jwk.get("kid")
        keys.append(_Key(kid if isinstance(kid, str) else None, algorithm, parsed.key))
    return keys


class JwksCache:
    """An issuer's signing keys, fetched on demand and refetched (rate-limited) on rotation."""

    def __init__(
        self,
        url: str,
        *,
        max_age: float,
        refetch_interval: float,
        session: aiohttp.ClientSession,
        discover_issuer: str | None = None,
    ) -> None:
        """``url``: the JWKS; with ``discover_issuer``, the discovery document naming it."""
        self._url = url
        self._issuer = discover_issuer
        self._max_age = max_age
        self._refetch_interval = refetch_interval
        self._session = session
        self._keys: list[_Key] | None = None
        self._fetched_at = 0.0  # monotonic time of the last fetch attempt
        self._inflight: asyncio.Future[None] | None = None
        self._error = "not fetched yet"
        self.fetches = 0  # attempts, for the operator's curiosity and the tests

    async def find(self, kid: str | None) -> _Key | None:
        """The key ``kid`` names (or the only key, for a token without one)."""
        stale = self._keys is None or time.monotonic() - self._fetched_at > self._max_age
        if stale or self._inflight is not None:
            await self._refresh()
        if self._keys is None:
            raise KeysUnavailable(f"the issuer's keys could not be fetched: {self._error}")
        found = self._pick(kid)
        if found is None:  # rotated keys, or a kid nobody publishes
            await self._refresh()
            found = self._pick(kid)
        return found

    async def _get(self, url: str, what: str) -> bytes:
        async with self._session.get(
            url, timeout=aiohttp.ClientTimeout(total=5), allow_redirects=False
        ) as resp:
            resp.raise_for_status()
            body = await resp.content.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"{what} larger than 256 KiB")
        return body

    async def _discover(self) -> str:
        """The ``jwks_uri`` of the issuer's discovery document (``ValueError`` if unusable)."""
        document = orjson.loads(await self._get(self._url, "discovery document"))
        if not isinstance(document, dict):
            raise ValueError("the discovery document is not a JSON object")
        if document.get("issuer") != self._issuer:
            raise ValueError(
                f"the discovery document names issuer {document.get('issuer')!r},"
                f" not {self._issuer!r}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise ValueError("the discovery document has no jwks_uri")
        if jwks_uri.startswith("http://") and not str(self._issuer).startswith("http://"):
            raise ValueError("the discovery document's jwks_uri is not https")
        return jwks_uri

    def _pick(self, kid: str | None) -> _Key | None:
        keys = self._keys or []
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((k for k in keys if k.kid == kid), None)

    async def _refresh(self) -> None:
        """Join the fetch under way, or start one if the interval allows (at most one per
        interval, whatever the tokens say, and no storm while the issuer is down)."""
        if self._inflight is None:
            if self.fetches and time.monotonic() - self._fetched_at < self._refetch_interval:
                return
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(self._fetched)
        await asyncio.shield(self._inflight)  # a caller that goes away leaves it running

    def _fetched(self, task: asyncio.Future[None]) -> None:
        self._inflight = None

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            url = self._url if self._issuer is None else await self._discover()
            self._keys = _parse_jwks(orjson.loads(await self._get(url, "JWKS")))
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            # Keys fetched before stay in use; without any, tokens get 503 until one works.
            self._error = str(e) or type(e).__name__
            log.warning("JWKS fetch from %s failed: %s", self._url, self._error)


def discovery_url(issuer: str) -> str:
    """Where an issuer publishes its OpenID Connect discovery document."""
    return issuer.rstrip("/") + DISCOVERY_PATH


class JwtVerifier:
    """Checks a token and answers its claims, or raises :class:`InvalidToken`."""

    def __init__(self, settings: JwtSettings, *, session: aiohttp.ClientSession | None) -> None:
        self.settings = settings
        self.jwks: JwksCache | None = None
        # Tokens that passed: their claims, and the JWKS fetch they were checked against.
        self._verified: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()
        if settings.remote_keys:
            assert session is not None, "a JWKS is fetched with the gateway's client session"
            discovered = settings.discovery and settings.issuer is not None
            self.jwks = JwksCache(
                discovery_url(str(settings.issuer)) if discovered else str(settings.jwks_url),
                max_age=settings.jwks_max_age,
                refetch_interval=settings.jwks_refetch_interval,
                session=session,
                discover_issuer=settings.issuer if discovered else None,
            )

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` (not to be changed: a token seen before answers the same
        dict), or :class:`InvalidToken`.

        A token that passed is remembered (at most ``MAX_VERIFIED``, the least recently used
        go first): a client sending it again costs a lookup and its expiry check instead of
        a signature check (~130 µs of RS256, measured). Everything else checked is fixed in
        the token; a JWKS fetched since, which may have dropped its key, forgets them all."""
        remembered = self._verified.get(token)
        if remembered is not None:
            claims, generation = remembered
            if generation == self._generation():
                if time.time() > float(claims["exp"]) + self.settings.leeway:
                    del self._verified[token]
                    raise InvalidToken("token refused: Signature has expired")
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
        generation = self._generation()
        claims = await self._check(token)
        if generation == self._generation():  # else the keys changed meanwhile: not kept
            self._verified[token] = (claims, generation)
            if len(self._verified) > MAX_VERIFIED:
                self._verified.popitem(last=False)
        return claims

    def _generation(self) -> int:
        return self.jwks.fetches if self.jwks is not None else 0

    async def _check(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as e:
            raise InvalidToken(f"malformed token: {e}") from e
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("malformed token: 'kid' must be a string")
        key = await self._key(kid)
        if header.get("alg") != key.algorithm:
            # The header may not choose: 'none', or HS256 over a public key, end here.
            raise InvalidToken(
                f"token algorithm {header.get('alg')!r} is not its key's ({key.algorithm})"
            )
        required = ["exp", "sub"]
        if self.settings.issuer:
            required.append("iss")
        if self.settings.audience:
            required.append("aud")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": required},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(f"token refused: {e}") from e
        if not isinstance(claims.get("sub"), str) or not claims["sub"].strip():
            raise InvalidToken("token refused: 'sub' must be a non-empty string")
        return claims

    async def _key(self, kid: str | None) -> _Key:
        # A kid the JWKS knows selects its key; a token without one, the secret when set.
        if self.jwks is not None and (kid is not None or self.settings.secret is None):
            found = await self.jwks.find(kid)
            if found is not None:
                return found
            if self.settings.secret is None:
                raise InvalidToken(f"no key {kid!r} in the issuer's JWKS")
        if self.settings.secret is not None:
            return _Key(None, HMAC_ALGORITHM, self.settings.secret)
        raise InvalidToken("no key to check this token with")
