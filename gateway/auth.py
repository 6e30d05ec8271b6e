"""Who is calling: credentials of the web API, their roles, and what each may do.

A caller presents one bearer credential (``Authorization: Bearer …``, or the
first frame of a WebSocket):

- ``BOTSERVER_ADMIN_TOKEN``: admin of every bot;
- an API key (``bsk_…``, ``botserver keys create``): its role, for its bot
  or every bot; a ``user`` key acts as the user it names;
- a visitor token (``bv1.…``, given to the web widget): the user it names;
- a JWT (HS256 with ``BOTSERVER_JWT_SECRET``, or from a JWKS: ``BOTSERVER_JWKS_URL``
  or the one an OpenID Connect issuer's discovery document names): the user of its
  ``sub``, with the roles of its roles claim (``user`` when it names none of ours),
  for the bots of its bots claim (every bot when it has none).

Roles: ``admin`` (reload, keys, channel state, and anything ``app`` may),
``agent`` (human handoff), ``app`` (a backend acting for its users: the
``user_id`` of a message is taken from the body only for ``app`` and
``admin``), ``user`` (itself only: a user's id always comes from its
credential, never from the body).

An invalid credential is a 401, a valid one without the right role a 403,
and an admin endpoint with no credential a 403 too: admin is disabled, not
open, until something grants it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
from aiohttp import web

from config.packages import valid_bot_name
from gateway.auth_jwt import InvalidToken, JwtSettings, JwtVerifier, KeysUnavailable
from gateway.auth_visitor import VisitorTokens, is_visitor_token
from gateway.keys import AUTH, AUTH_CONFIG, STORES
from gateway.rate_limits import RATE_LIMITER
from storage.api_keys import ROLES, ApiKeyStore, Role, is_api_key

log = logging.getLogger(__name__)

MAX_CREDENTIAL = 8192
VISITOR_KEY_NAME = "visitor-token"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="botserver"'}


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The credentials the gateway accepts besides its API keys and visitor tokens."""

    admin_token: str | None = field(default=None, repr=False)  # secrets stay out of reprs
    jwt: JwtSettings = field(default_factory=JwtSettings)
    visitor_secret: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthConfig:
        """``BOTSERVER_ADMIN_TOKEN``, ``BOTSERVER_VISITOR_SECRET``; JWTs:
        ``BOTSERVER_JWT_SECRET`` (HS256, 32 bytes or more), ``BOTSERVER_JWKS_URL`` (with
        ``BOTSERVER_JWT_ISSUER`` and ``BOTSERVER_JWT_AUDIENCE``, then required), or
        ``BOTSERVER_OIDC_ISSUER`` (the issuer, whose discovery document names its JWKS; with
        ``BOTSERVER_JWT_AUDIENCE``), ``BOTSERVER_JWT_ROLES_CLAIM`` (``roles``),
        ``BOTSERVER_JWT_BOTS_CLAIM`` (``bots``), ``BOTSERVER_JWT_LEEWAY`` (30 s),
        ``BOTSERVER_JWKS_REFETCH_INTERVAL`` (60 s). ``ValueError`` names what is wrong."""
        env = os.environ if env is None else env

        def value(name: str) -> str | None:
            return env.get(name, "").strip() or None

        def seconds(name: str, default: float) -> float:
            raw = value(name)
            try:
                return default if raw is None else float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None

        secret = value("BOTSERVER_JWT_SECRET")
        oidc = value("BOTSERVER_OIDC_ISSUER")
        issuer = value("BOTSERVER_JWT_ISSUER")
        if oidc is not None and issuer is not None and oidc != issuer:
            raise ValueError("BOTSERVER_OIDC_ISSUER and BOTSERVER_JWT_ISSUER differ")
        visitor = value("BOTSERVER_VISITOR_SECRET")
        if visitor is not None and len(visitor.encode()) < 32:
            raise ValueError("BOTSERVER_VISITOR_SECRET must be at least 32 bytes long")
        return cls(
            admin_token=value("BOTSERVER_ADMIN_TOKEN"),
            jwt=JwtSettings(
                secret=secret.encode() if secret else None,
                jwks_url=value("BOTSERVER_JWKS_URL"),
                discovery=oidc is not None,
                issuer=oidc or issuer,
                audience=value("BOTSERVER_JWT_AUDIENCE"),
                leeway=seconds("BOTSERVER_JWT_LEEWAY", 30.0),
                roles_claim=value("BOTSERVER_JWT_ROLES_CLAIM") or "roles",
                bots_claim=value("BOTSERVER_JWT_BOTS_CLAIM") or "bots",
                jwks_refetch_interval=seconds("BOTSERVER_JWKS_REFETCH_INTERVAL", 60.0),
            ),
            visitor_secret=visitor.encode() if visitor else None,
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    via: Literal["admin_token", "api_key", "visitor", "jwt"]
    roles: frozenset[Role]
    user_id: str | None = None  # the user it is; None for app, agent and admin keys
    bot_id: str | None = None  # the only bot it may use; None: every bot
    key_id: str | None = None
    bots: frozenset[str] | None = None  # the bots a JWT names (its bots claim); None: every bot
    name: str | None = None  # a label to show people: the key's name, the JWT's name claim

    def may_use(self, bot: str) -> bool:
        return (self.bot_id is None or self.bot_id == bot) and (
            self.bots is None or bot in self.bots
        )

    def is_admin_of(self, bot: str) -> bool:
        return "admin" in self.roles and self.may_use(bot)

    @property
    def acts_for_users(self) -> bool:
        """An ``app`` (or admin) names the user of each message itself."""
        return bool({"app", "admin"} & self.roles)


class AuthRefused(web.HTTPException):
    """A refusal with the API's JSON error body; WebSockets send it as an error frame."""

    def __init__(self, code: str, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(
            text=orjson.dumps({"error": code, "message": message}).decode(),
            content_type="application/json",
            headers=headers,
        )
        self.code = code
        self.message = message


class Unauthorized(AuthRefused):
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__("unauthorized", message, headers=_CHALLENGE)


class Forbidden(AuthRefused):
    status_code = 403

    def __init__(self, message: str) -> None:
        super().__init__("forbidden", message)


class AuthUnavailable(AuthRefused):
    status_code = 503

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message, headers={"Retry-After": "5"})


class Authenticator:
    """Turns a bearer credential into a :class:`Principal`, or refuses it (401, 503)."""

    def __init__(
        self,
        config: AuthConfig,
        keys: ApiKeyStore,
        visitors: VisitorTokens,
        jwt: JwtVerifier | None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.visitors = visitors
        self.jwt = jwt

    async def authenticate(self, token: str) -> Principal:
        if not token or len(token) > MAX_CREDENTIAL:
            raise Unauthorized("the credential is empty or longer than 8 KiB")
        admin = self.config.admin_token
        if admin is not None and hmac.compare_digest(token.encode(), admin.encode()):
            return Principal("admin_token", frozenset({"admin"}))
        if is_api_key(token):
            key = await self.keys.verify(token)
            if key is None:
                raise Unauthorized("unknown or revoked API key")
            return Principal(
                "api_key",
                frozenset({key.role}),
                key.user_id,
                key.bot_id,
                key_id=key.id,
                name=key.name or None,
            )
        if is_visitor_token(token):
            user_id = self.visitors.verify(token)
            if user_id is None:
                raise Unauthorized("invalid visitor token")
            return Principal("visitor", frozenset({"user"}), user_id)
        if token.count(".") == 2:
            return await self._jwt(token)
        raise Unauthorized("unrecognised credential: an API key, a visitor token or a JWT")

    async def _jwt(self, token: str) -> Principal:
        if self.jwt is None:
            raise Unauthorized(
                "JWTs are not accepted: neither BOTSERVER_JWT_SECRET nor BOTSERVER_JWKS_URL is set"
            )
        try:
            claims = await self.jwt.verify(token)
        except InvalidToken as e:
            raise Unauthorized(str(e)) from e
        except KeysUnavailable as e:
            raise AuthUnavailable(str(e)) from e
        sub = str(claims["sub"])
        if len(sub) > 255:
            raise Unauthorized("token refused: 'sub' is longer than 255 characters")
        roles = _roles(claims.get(self.jwt.settings.roles_claim))
        bots = _bots(claims, self.jwt.settings.bots_claim)
        name = claims.get("name")
        label = name[:255] if isinstance(name, str) and name.strip() else None
        return Principal("jwt", roles or frozenset({"user"}), sub, bots=bots, name=label)

    async def admin_configured(self) -> bool:
        """Whether anything can make a caller admin at all."""
        if self.config.admin_token or (self.jwt is not None):
            return True
        return await self.keys.any_admin()


def _roles(raw: Any) -> frozenset[Role]:
    """Our roles among a claim's (a list, or a space-separated string); others are ignored."""
    names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(r for r in ROLES if r in names)


def _bots(claims: Mapping[str, Any], name: str) -> frozenset[str] | None:
    """The bots a token is for: its claim ``name``, a bot's name or a list of them; every bot
    when it has no such claim. A claim of another shape is refused, never read as "all"."""
    if name not in claims:
        return None
    raw = claims[name]
    names = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and valid_bot_name(n) for n in names)
    ):
        raise Unauthorized(f"token refused: {name!r} must name a bot or a list of bots")
    return frozenset(names)


def bearer(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must read 'Bearer <credential>'")
    return token.strip()


async def caller(request: web.Request) -> Principal | None:
    """The request's principal; None without an Authorization header; 401 when it is bad."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    try:
        principal = await request.app[AUTH].authenticate(bearer(header))
    except Unauthorized as e:
        log.info("refused credential on %s %s: %s", request.method, request.path, e.message)
        raise
    await limit_credential(request, principal)
    return principal


async def limit_credential(request: web.Request, principal: Principal) -> None:
    """Take from the credential's rate-limit bucket: 429 (``RateLimited``) when it is empty.

    A visitor counts by its user, an API key by its id, a JWT by its subject, the admin
    token as one; an app, agent or admin has the ``app`` limit, anyone else ``user``."""
    privileged = bool({"app", "agent", "admin"} & principal.roles)
    if principal.via == "admin_token":
        key = "admin-token"
    elif principal.via == "api_key":
        key = f"key:{principal.key_id}"
    elif principal.via == "visitor":
        key = f"visitor:{principal.user_id}"
    else:
        key = f"jwt:{principal.user_id}"
    await request.app[RATE_LIMITER].check_credential(request, key, privileged=privileged)


async def require_admin(request: web.Request, bot: str, what: str) -> Principal:
    """The caller, when it is admin of ``bot``; 403 otherwise (also with nothing configured)."""
    principal = await caller(request)
    if principal is None:
        if not await request.app[AUTH].admin_configured():
            raise Forbidden(
                f"{what} is disabled: no admin credential is configured (set"
                " BOTSERVER_ADMIN_TOKEN, create a key with `botserver keys create BOT --role"
                " admin`, or accept JWTs with the admin role)"
            )
        raise Forbidden(f"{what} needs an admin credential (Authorization: Bearer …)")
    if not principal.is_admin_of(bot):
        raise Forbidden(f"{what} needs the admin role for bot {bot!r}")
    return principal


async def require_caller(request: web.Request, bot: str) -> Principal:
    """Any authenticated caller allowed on ``bot``: 401 without a credential."""
    principal = await caller(request)
    if principal is None:
        raise Unauthorized(
            "this endpoint needs a credential: a visitor token (the web widget's, from"
            " POST /api/v1/visitors), a JWT, or an API key"
        )
    return check_bot(principal, bot)


async def require_agent(request: web.Request, bot: str) -> Principal:
    """A caller with the ``agent`` (or ``admin``) role for ``bot``: 401 without a credential,
    403 with another role or for another bot."""
    principal = await require_caller(request, bot)
    if not {"agent", "admin"} & principal.roles:
        raise Forbidden("human handoff needs the agent or admin role")
    return principal


def agent_id(principal: Principal) -> str:
    """The stable id of a person answering conversations, whatever credential they use."""
    if principal.via == "admin_token":
        return "admin"
    if principal.via == "api_key":
        return f"key:{principal.key_id}"
    return f"{principal.via}:{principal.user_id}"


def agent_name(principal: Principal) -> str:
    if principal.name:
        return principal.name
    if principal.via == "admin_token":
        return "admin"
    if principal.via == "api_key":
        return f"agent {principal.key_id}"
    return principal.user_id or "agent"


def check_bot(principal: Principal, bot: str) -> Principal:
    if not principal.may_use(bot):
        only = principal.bot_id or ", ".join(sorted(principal.bots or ()))
        raise Forbidden(f"this credential is for bot {only!r}, not {bot!r}")
    return principal


def message_user(principal: Principal) -> str | None:
    """The user a principal's messages come from; None when the body names it (``app``).

    A credential without a user of its own that may not name one (an agent key) is 403.
    """
    if principal.acts_for_users:
        return None
    if principal.user_id is None:
        raise Forbidden("this credential does not send messages as a user")
    return principal.user_id


def without_user_id(data: Mapping[str, Any]) -> dict[str, Any]:
    """A payload with its ``user_id`` dropped: only an ``app`` may name the user."""
    return {k: v for k, v in data.items() if k != "user_id"}


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """The authenticator, after the stores (API keys and the visitor key live there)."""
    config = app[AUTH_CONFIG]
    stores = app[STORES]
    secret = config.visitor_secret or await stores.api_keys.signing_key(VISITOR_KEY_NAME)
    session: aiohttp.ClientSession | None = None
    if config.jwt.remote_keys:
        session = aiohttp.ClientSession()
    # Verified API keys are remembered while this instance hears revocations.
    revocations = asyncio.create_task(stores.api_keys.listen(), name="api-key-revocations")
    try:
        verifier = JwtVerifier(config.jwt, session=session) if config.jwt.enabled else None
        app[AUTH] = Authenticator(config, stores.api_keys, VisitorTokens(secret), verifier)
        yield
    finally:
        revocations.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await revocations
        if session is not None:
            await session.close()
