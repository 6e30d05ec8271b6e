"""Rate limits of the public endpoints: per client address and per credential.

Every limit is a token bucket (``storage.rate_buckets``: in Redis when ``REDIS_URL`` is set,
so every instance shares it, in process otherwise). A request over a limit is answered 429
``rate_limited`` with ``Retry-After`` (whole seconds until the next request fits); on a
WebSocket a message frame over it gets an ``error`` frame with ``retry_after`` and the socket
stays open.

Which buckets a request takes from:

- ``ip`` (``BOTSERVER_RATE_LIMIT_IP``): the client address, on every ``/api/v1/`` route and
  the WebSocket's upgrade and message frames;
- ``visitors`` (``BOTSERVER_RATE_LIMIT_VISITORS``): the client address, on what issues a new
  visitor token (``POST /api/v1/visitors``, ``GET /chat/{bot}``);
- ``user`` and ``app`` (``BOTSERVER_RATE_LIMIT_USER``, ``…_APP``): the credential, once it is
  authenticated: a visitor, a user key or a JWT of a user by its user; an ``app``, ``agent``
  or ``admin`` key by its id, a JWT of those roles by its subject, the admin token as one;
- ``webhook`` (``BOTSERVER_RATE_LIMIT_WEBHOOK``): the client address and the bot, on the
  provider and generic webhooks. Providers deliver from ranges of addresses that change
  (Telegram's, Meta's, Twilio's on AWS), so no address is exempt; the default is far above
  what one address of a provider sends one bot, and a provider answered 429 delivers again
  later.

The client address is the connection's peer, unless that peer is one of
``BOTSERVER_TRUSTED_PROXIES`` (addresses or networks): then ``X-Forwarded-For`` is read
from the right, past every trusted proxy, and the first address that is not one is the
client. An IPv6 client is limited by its /64, which one host usually holds whole.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from storage.base import BucketDecision, Rate, RateBuckets

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SPEC = re.compile(
    r"^\s*(?P<count>\d+(?:\.\d+)?)\s*/\s*(?P<unit>s|sec|second|m|min|minute|h|hour)s?"
    r"(?:\s+burst\s+(?P<burst>\d+))?\s*$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600}
_UNIT_SECONDS["hour"] = 3600
_OFF = ("off", "none", "0", "false", "no")


def parse_rate(name: str, raw: str) -> Rate | None:
    """``"60/minute"``, ``"10/second burst 40"``, ``"1000/hour"``; ``off``: no limit. The
    burst (requests at once) defaults to the count."""
    text = raw.strip()
    if text.lower() in _OFF:
        return None
    match = _SPEC.match(text)
    if match is None:
        raise ValueError(
            f"{name} must read like '60/minute' or '10/second burst 40' (or 'off'), not {raw!r}"
        )
    count = float(match["count"])
    seconds = _UNIT_SECONDS[match["unit"].lower()]
    burst = int(match["burst"]) if match["burst"] else max(1, math.floor(count))
    if count <= 0 or burst < 1:
        raise ValueError(f"{name} must allow at least one request: {raw!r}")
    return Rate(per_second=count / seconds, burst=burst)


def _networks(name: str, raw: str) -> tuple[Network, ...]:
    out: list[Network] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{name}: {item!r} is not an address or network") from None
    return tuple(out)


# The defaults: an address may send what a busy backend does, a person what one types, and
# a provider's address far more than it sends one bot.
IP = Rate(per_second=50.0, burst=200)
VISITORS = Rate(per_second=1.0, burst=60)
USER = Rate(per_second=1.0, burst=20)
APP = Rate(per_second=50.0, burst=200)
WEBHOOK = Rate(per_second=100.0, burst=1000)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """The limits in force; ``None`` turns one off. Defaults: see :meth:`from_env`."""

    ip: Rate | None = IP
    visitors: Rate | None = VISITORS
    user: Rate | None = USER
    app: Rate | None = APP
    webhook: Rate | None = WEBHOOK
    trusted_proxies: tuple[Network, ...] = field(default=())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RateLimitConfig:
        """``BOTSERVER_RATE_LIMIT_IP`` (``50/second burst 200``), ``…_VISITORS``
        (``60/minute``), ``…_USER`` (``60/minute burst 20``), ``…_APP`` (``50/second burst
        200``), ``…_WEBHOOK`` (``100/second burst 1000``), each ``off`` to turn it off;
        ``BOTSERVER_RATE_LIMITS=off`` turns them all off; ``BOTSERVER_TRUSTED_PROXIES``."""
        env = os.environ if env is None else env
        default = cls()
        proxies = _networks("BOTSERVER_TRUSTED_PROXIES", env.get("BOTSERVER_TRUSTED_PROXIES", ""))
        if env.get("BOTSERVER_RATE_LIMITS", "").strip().lower() in _OFF:
            return cls(None, None, None, None, None, proxies)

        def rate(suffix: str, fallback: Rate | None) -> Rate | None:
            name = f"BOTSERVER_RATE_LIMIT_{suffix}"
            raw = env.get(name, "").strip()
            return parse_rate(name, raw) if raw else fallback

        return cls(
            ip=rate("IP", default.ip),
            visitors=rate("VISITORS", default.visitors),
            user=rate("USER", default.user),
            app=rate("APP", default.app),
            webhook=rate("WEBHOOK", default.webhook),
            trusted_proxies=proxies,
        )


class RateLimited(web.HTTPException):
    """429 with the API's JSON error body and ``Retry-After``."""

    status_code = 429

    def __init__(self, what: str, retry_after: float) -> None:
        self.retry_after = retry_seconds(retry_after)
        self.message = f"too many requests {what}; try again in {self.retry_after} s"
        super().__init__(
            text=orjson.dumps({"error": "rate_limited", "message": self.message}).decode(),
            content_type="application/json",
            headers={"Retry-After": str(self.retry_after)},
        )


def retry_seconds(delay: float) -> int:
    """``Retry-After`` in whole seconds: never 0, which would invite an immediate retry."""
    return max(1, math.ceil(delay - 1e-6))


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The client's address as a bucket key (see the module doc)."""
    peer = _address(request.remote)
    if peer is None:
        return request.remote or "unknown"  # a Unix socket: one bucket for all
    if trusted and _trusted(peer, trusted):
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # a hop we cannot read: the last trusted one is as far as we know
            peer = address
            if not _trusted(address, trusted):
                break
    if isinstance(peer, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((peer, 64), strict=False))
    return str(peer)


def _address(raw: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip().removeprefix("[").split("]")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: tuple[Network, ...]
) -> bool:
    return any(address.version == n.version and address in n for n in trusted)


class RateLimiter:
    """Takes from the buckets a request or frame needs; raises :class:`RateLimited`."""

    def __init__(self, config: RateLimitConfig, buckets: RateBuckets) -> None:
        self.config = config
        self._buckets = buckets
        self._refused = 0
        self._reported_at = 0.0

    def address(self, request: web.Request) -> str:
        return client_address(request, self.config.trusted_proxies)

    async def check_address(self, request: web.Request, *, visitors: bool = False) -> None:
        """The ``ip`` bucket of the request's client (and ``visitors`` when it issues one)."""
        address = self.address(request)
        if visitors:
            await self._take(request, "visitors", address, self.config.visitors, "new visitors")
        await self._take(request, "ip", address, self.config.ip, "from this address")

    async def check_webhook(self, request: web.Request, bot: str) -> None:
        address = self.address(request)
        rate = self.config.webhook
        await self._take(request, f"webhook:{bot}", address, rate, "to this webhook")

    async def check_credential(self, request: web.Request, key: str, *, privileged: bool) -> None:
        """The credential's bucket: ``app`` for an app, agent or admin, else ``user``."""
        if privileged:
            await self._take(request, "app", key, self.config.app, "with this credential")
        else:
            await self._take(request, "user", key, self.config.user, "from this user")

    async def _take(
        self, request: web.Request, bucket: str, key: str, rate: Rate | None, what: str
    ) -> None:
        if rate is None:
            return
        decision: BucketDecision = await self._buckets.take(f"{bucket}:{key}", rate)
        if not decision.allowed:
            self._report(request, bucket, key)
            raise RateLimited(what, decision.retry_after)

    def _report(self, request: web.Request, bucket: str, key: str) -> None:
        # One line per 10 s at most: a flood must not become a flood of log lines.
        self._refused += 1
        now = time.monotonic()
        if now - self._reported_at >= 10.0:
            log.warning(
                "rate limited %d request(s) since the last report (latest: %s bucket %s, %s %s)",
                self._refused,
                bucket,
                key,
                request.method,
                request.path,
            )
            self._refused = 0
            self._reported_at = now


RATE_LIMIT_CONFIG = web.AppKey("rate_limit_config", RateLimitConfig)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)


def route_limits(route: str) -> str | None:
    """Which address buckets a route (its canonical path) takes from: ``webhook``,
    ``visitors`` (and ``ip``), ``ip``, or None. Health, readiness, static files and the
    OpenAPI document are not limited (load balancers poll them)."""
    if route.startswith("/webhooks/"):
        return "webhook"
    if route in ("/api/v1/visitors", "/chat/{bot}"):
        return "visitors"
    if route.startswith(("/api/v1/", "/ws/")):
        return "ip"
    return None


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The address buckets of a route, before its handler reads anything (a credential's
    bucket comes once it is authenticated, in :func:`gateway.auth.caller`)."""
    resource = request.match_info.route.resource
    kind = route_limits(resource.canonical) if resource is not None else None
    if kind is not None:
        limiter = request.app[RATE_LIMITER]
        if kind == "webhook":
            await limiter.check_webhook(request, request.match_info.get("bot", ""))
        else:
            await limiter.check_address(request, visitors=kind == "visitors")
    return await handler(request)
