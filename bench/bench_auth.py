"""The cost of authentication: turns/s with each credential, and µs per authentication.

    .venv/bin/python -m bench.bench_auth                 # ~2 minutes
    .venv/bin/python -m bench.bench_auth --quick         # ~40 s

The web API needs a credential on every call, so there is no unauthenticated turn left to
compare with. What stands in for one is the admin token: it is checked by one constant-time
comparison (~0.3 µs, measured below), so turns/s with it is the turn without the cost of
authenticating. In one run, against one ``botserver serve`` on its embedded defaults (rate
limits off: this measures authentication alone), the same load generator as ``bench_web``
runs closed-loop dialog turns of the default bot with, in turn and alternating over the
rounds:

* the admin token (the baseline);
* an ``app`` API key (a PostgreSQL lookup of its id and a constant-time compare of its
  SHA-256, on every request: a revoked key is refused at once);
* an RS256 JWT of an ``app`` subject whose key comes from a JWKS served on 127.0.0.1
  (``BOTSERVER_JWKS_URL``; fetched once, then cached), the same token on every request, as
  a backend sends its token until it expires (a token seen before is not checked again).

Printed: the median turns/s of each and its ratio to the admin token's (the target: at
least 0.95, auth under 5 %), the gateway's and PostgreSQL's CPU per turn, and, measured
in this process with the same code (``gateway.auth.Authenticator`` on an embedded
PostgreSQL), µs per authentication of every credential kind against the server's CPU per
turn, JWTs both on their first use (the signature checked) and seen before. The CPU
figures are the steadier: turns/s vary by a few percent from phase to phase on a shared
machine, more than the effect measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.bench_web import (
    BOTSERVER,
    HOST,
    Bench,
    BenchError,
    Phase,
    _free_port,
    _get_status,
    _server_env,
    gateway_server,
)

ISSUER = "https://issuer.bench.invalid"
AUDIENCE = "botserver-bench"
KID = "bench-key-1"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _keys() -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256"}
    return key, {"keys": [{**jwk, "n": _b64(public.n), "e": _b64(public.e)}]}


def _jwt(key: Any, sub: str, roles: list[str]) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 7200}
    return jwt.encode({**claims, "roles": roles}, key, algorithm="RS256", headers={"kid": KID})


def _request(
    port: int, method: str, path: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, orjson.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, orjson.loads(data) if data else {}
    finally:
        conn.close()


# -- in process: µs per authentication ---------------------------------------------------------


async def _per_call(
    call: Callable[[], Awaitable[object]], iterations: int, batches: int
) -> tuple[float, float]:
    """Median µs per call over ``batches``: this process's CPU, and the wall clock (which
    includes PostgreSQL's answer for an API key, and any wait for a core)."""
    cpu, wall = [], []
    for _ in range(batches):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(iterations):
            await call()
        cpu.append((time.process_time() - c0) / iterations * 1e6)
        wall.append((time.perf_counter() - w0) / iterations * 1e6)
    return statistics.median(cpu), statistics.median(wall)


async def _micro(
    tmp: Path, jwks_url: str, rsa_key: Any, iterations: int, batches: int
) -> dict[str, tuple[float, float]]:
    from config.settings import Settings
    from gateway.auth import AuthConfig, Authenticator
    from gateway.auth_jwt import JwtSettings, JwtVerifier
    from gateway.auth_visitor import VisitorTokens
    from storage.api_keys import PostgresApiKeyStore
    from storage.base import Rate
    from storage.rate_buckets import MemoryRateBuckets
    from storage.services import open_stores

    stores = await open_stores(Settings(data_dir=tmp / "micro"))
    session = aiohttp.ClientSession()
    try:
        hs_secret = secrets.token_bytes(32)
        admin = secrets.token_urlsafe(32)
        config = AuthConfig(
            admin_token=admin,
            jwt=JwtSettings(secret=hs_secret, jwks_url=jwks_url, issuer=ISSUER, audience=AUDIENCE),
        )
        visitors = VisitorTokens(secrets.token_bytes(32))
        authenticator = Authenticator(
            config, stores.api_keys, visitors, JwtVerifier(config.jwt, session=session)
        )
        _, api_key = await stores.api_keys.create(bot_id="default", role="app", name="bench")
        now = int(time.time())
        hs = jwt.encode(
            {"sub": "bench-app", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 7200},
            hs_secret,
            algorithm="HS256",
        )
        tokens = {
            "admin token": admin,
            "visitor token": visitors.issue()[0],
            "API key": api_key,
            "JWT HS256": hs,
            "JWT RS256 (JWKS)": _jwt(rsa_key, "bench-app", ["app"]),
        }
        # Verified keys are remembered while revocations are heard, as in the gateway.
        revocations = asyncio.create_task(stores.api_keys.listen())
        await stores.api_keys.wait_subscribed()
        for token in tokens.values():  # warm: the JWKS fetched, statements prepared
            await authenticator.authenticate(token)
        out: dict[str, tuple[float, float]] = {}
        for name, token in tokens.items():
            label = f"{name}, seen before" if name.startswith(("JWT", "API")) else name
            out[label] = await _per_call(
                lambda token=token: authenticator.authenticate(token), iterations, batches
            )
        # An API key not remembered (its first use, or revocations unheard): the table's row.
        uncached = Authenticator(config, PostgresApiKeyStore(stores.pool), visitors, None)
        out["API key, checked in the table"] = await _per_call(
            lambda: uncached.authenticate(api_key), iterations, batches
        )
        # A token's first use: its signature checked (a new token each call).
        first = max(iterations // 4, 50)
        for name, make in (
            (
                "JWT HS256, first use",
                lambda i: jwt.encode(
                    {
                        "sub": "bench-app",
                        "iss": ISSUER,
                        "aud": AUDIENCE,
                        "exp": now + 7200,
                        "jti": str(i),
                    },
                    hs_secret,
                    algorithm="HS256",
                ),
            ),
            ("JWT RS256 (JWKS), first use", lambda i: _jwt(rsa_key, f"bench-{i}", ["app"])),
        ):
            fresh = iter([make(i) for i in range(first * batches)])
            out[name] = await _per_call(
                lambda fresh=fresh: authenticator.authenticate(next(fresh)), first, batches
            )
        buckets = MemoryRateBuckets()
        rate = Rate(per_second=1e9, burst=10**9)
        out["(a rate-limit check, in process)"] = await _per_call(
            lambda: buckets.take("k", rate), iterations, batches
        )
        revocations.cancel()
        return out
    finally:
        await session.close()
        await stores.close()


# -- end to end -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="botserver-bench-auth-"))
    rsa_key, jwks = _keys()
    (tmp / "jwks").mkdir()
    (tmp / "jwks" / "jwks.json").write_text(json.dumps(jwks))
    jwks_port = _free_port()
    jwks_server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(jwks_port), "--bind", HOST],
        cwd=tmp / "jwks",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    jwks_url = f"http://{HOST}:{jwks_port}/jwks.json"
    admin = secrets.token_urlsafe(32)
    env = _server_env()
    env.update(
        BOTSERVER_ADMIN_TOKEN=admin,
        BOTSERVER_JWKS_URL=jwks_url,
        BOTSERVER_JWT_ISSUER=ISSUER,
        BOTSERVER_JWT_AUDIENCE=AUDIENCE,
        BOTSERVER_RATE_LIMITS="off",
        BOTSERVER_KB_INGEST="off",
    )
    gateway = gateway_server(args.botserver, tmp, env)
    port = gateway.port
    bench = Bench(argparse.Namespace(clients=1), tmp)
    try:
        for _ in range(100):  # the JWKS server's start
            if _get_status(jwks_port, "/jwks.json") == 200:
                break
            time.sleep(0.05)
        print(f"gateway ready in {gateway.start(timeout=60):.1f} s; JWKS at {jwks_url}")
        status, made = _request(port, "POST", "/api/v1/bots/default/keys", admin, {"role": "app"})
        if status != 201:
            raise BenchError(f"could not create an API key: {status} {made}")
        credentials = {
            "admin token": admin,
            "API key": made["key"],
            "JWT RS256 (JWKS)": _jwt(rsa_key, "bench-app", ["app"]),
        }
        for name, token in credentials.items():
            body = {"user_id": f"smoke-{name}", "text": "hi"}
            status, answer = _request(port, "POST", "/api/v1/bots/default/messages", token, body)
            if status != 200:
                raise BenchError(f"{name}: a turn answered {status}: {answer}")
        print(
            f"{args.rounds} round(s) x {len(credentials)} credentials, closed loop at"
            f" {args.connections} connections x {args.seconds:g} s; every request a dialog turn"
        )
        phases: dict[str, list[Phase]] = {name: [] for name in credentials}
        for round_no in range(args.rounds):
            # Rotate the order each round, so that no credential always runs first.
            names = list(credentials)
            names = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in names:
                phase = bench.phase(
                    gateway,
                    "throughput",
                    mode="closed",
                    duration=args.seconds,
                    connections=args.connections,
                    authorization=credentials[name],
                )
                errors = phase.total("errors")
                samples = [s for r in phase.results for s in r["error_samples"]][:2]
                print(
                    f"  round {round_no + 1} {name:18s} {phase.rate:8.1f} turns/s"
                    f"  errors {errors}{'  ' + str(samples) if errors else ''}"
                )
                phases[name].append(phase)
        micro = asyncio.run(_micro(tmp, jwks_url, rsa_key, args.iterations, 5))
    finally:
        gateway.stop()
        jwks_server.terminate()
        jwks_server.wait()

    base_rate = statistics.median(p.rate for p in phases["admin token"])
    base_cpu = statistics.median(
        p.cpu("server") / p.total("completed") * 1e6 for p in phases["admin token"]
    )
    print()
    print(
        "| credential | turns/s (median) | ratio to the admin token"
        " | gateway CPU µs/turn | PostgreSQL CPU µs/turn |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, runs in phases.items():
        rate = statistics.median(p.rate for p in runs)
        server = statistics.median(p.cpu("server") / p.total("completed") * 1e6 for p in runs)
        pg = statistics.median(p.cpu("postgres") / p.total("completed") * 1e6 for p in runs)
        print(f"| {name} | {rate:,.0f} | {rate / base_rate:.3f} | {server:,.0f} | {pg:,.0f} |")
    print()
    print(f"µs per authentication in process (median of 5 x {args.iterations}), and its share")
    print(f"of the gateway's CPU per turn with the admin token ({base_cpu:,.0f} µs):")
    print("| credential | CPU µs per authentication | wall µs | CPU share of a turn |")
    print("|---|---:|---:|---:|")
    for name, (cpu, wall) in micro.items():
        print(f"| {name} | {cpu:.1f} | {wall:.1f} | {cpu / base_cpu:.2%} |")
    print(f"\nlogs and data: {tmp}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="1 round of 4 s, 500 iterations")
    parser.add_argument("--botserver", type=Path, default=BOTSERVER)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.iterations = 1, 4.0, 500
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
