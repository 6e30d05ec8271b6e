"""Semantic cache benchmark: cached answers through the web API, against a bare aiohttp handler.

Run from the repository root::

    .venv/bin/python -m bench.bench_llm_cache            # 3 rounds of 5 s phases, ~3 min
    .venv/bin/python -m bench.bench_llm_cache --quick    # 1 round of 1.5 s phases, < 1 min
    .venv/bin/python -m bench.bench_llm_cache --redis redis://127.0.0.1:6379   # answers in Redis

Targets (issue 11): a cached answer through the web API in p99 < 5 ms from the exact tier
and p99 < 20 ms from the similarity tier (the question's embedding included), and the
throughput of both against the bare aiohttp handler of :mod:`bench.baseline_server`,
measured in the same run.

What runs: the real gateway (``botserver serve`` on its embedded PostgreSQL, or with
``--redis`` its answers, locks and cache in that Redis) with one bot, ``default``, whose
config.csv turns the cache on and whose model is a fake OpenAI server in this process
(tests/llm/fake_openai.py). One question is asked once, so the model answers it and the
cache keeps the answer; from then on every measured request is a new user (a new session:
the first message of a conversation is what the cache serves) asking either

* the same question in other case and spacing: an **exact** tier hit, or
* the same question worded a little otherwise ("how can I …" for "how do I …"): an exact
  miss, then a **similarity** hit, the question embedded by the packaged local model in
  an executor on every request (no tier remembers a paraphrase),

and the baseline answers the same requests with no storage at all. Every request is a
whole turn of the web API: authentication (the admin token, naming the user in the body),
the inbox claim, the session created, the cache lookup, the answer, two history rows and
the turn committed in PostgreSQL. At the end, the model's request count (1: the priming
question) and the gateway's cache counters (``GET /api/v1/bots/default/llm-cache``) show
that every measured request was served from its tier.

Phases, after a warm-up, gateway tiers and baseline alternating and the order turned
round each round; medians over rounds (the machine is shared):

1. throughput: closed loop at each ``--connections`` count; a server's best is its
   capacity, and the ratios are tier capacity / baseline capacity;
2. latency: open loop at ``--rate`` req/s, each request sent on its schedule whatever the
   answers, latency counted from the scheduled time (no coordinated omission).

The load generator and the servers are :mod:`bench.bench_web`'s (one process each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.bench_web import (
    BOTSERVER,
    HOST,
    ROOT,
    BenchError,
    Phase,
    Server,
    _counts,
    _cpu_model,
    _LoadGenerator,
    _nproc,
    _server_env,
    baseline_server,
    gateway_server,
)
from pipeline.kb.local_embedder import load_local_embedder
from pipeline.llm_cache import CacheRequest, CacheSettings, LLMCache
from storage.llm_cache_base import AnswerStore
from storage.llm_cache_memory import MemoryAnswers
from storage.llm_cache_redis import RedisAnswers
from tests.llm import fake_openai
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer, Outcome

PATH = "/api/v1/bots/{bot}/messages"
STATE = "/api/v1/bots/default/llm-cache"
QUESTION = "How do I reset my password?"
EXACT = "how do I reset my  password"  # the same question, other case and spacing
SIMILAR = "How can I reset my password?"  # worded otherwise: the similarity tier
ANSWER = (
    "Open the sign-in page, choose Forgot password and follow the link we email you; "
    "the link is valid for one hour."
)
TIERS = {"exact": EXACT, "similar": SIMILAR}
# What each measured server answers: the gateway's two tiers, the same gateway's plain dialog
# turn (a TALK, no model: the web path's own cost), the bare handler.
SERVERS = ("exact", "similar", "dialog", "baseline")
TEXTS = {**TIERS, "dialog": "hi", "baseline": QUESTION}
BOTS = {"exact": "default", "similar": "default", "dialog": "talk", "baseline": "default"}
DIALOG_REPLY = "Hello! Ask me anything about your account."
TARGET_P99_MS = {"exact": 5.0, "similar": 20.0}


# --------------------------------------------------------------------------- #
# Load generator: bench_web's, with a credential on every request
# --------------------------------------------------------------------------- #


class _AuthorizedLoad(_LoadGenerator):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.head = (
            f"POST {PATH.format(bot=spec['bot'])} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {spec['token']}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: "
        ).encode()


def _loadgen_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_AuthorizedLoad(spec).run())
    Path(spec["result_path"]).write_bytes(orjson.dumps(result))
    return 0


# --------------------------------------------------------------------------- #
# The model: the tests' fake OpenAI server, always answering, in a thread of ours
# --------------------------------------------------------------------------- #


class _AlwaysAnswers(FakeOpenAI):
    def next_outcome(self) -> Outcome:
        return Answer(text=tuple(re.findall(r"\S+\s*", ANSWER)))  # a stream of many deltas


class ModelServer:
    """The fake model on its own event loop, in a daemon thread of this process."""

    def __init__(self) -> None:
        self.server = _AlwaysAnswers()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)

    @property
    def requests(self) -> int:
        return sum(1 for call in self.server.calls if call.path.endswith("/chat/completions"))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- #
# Requests
# --------------------------------------------------------------------------- #


def _request(
    port: int, method: str, path: str, token: str, payload: dict[str, Any] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        body = orjson.dumps(payload) if payload is not None else None
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, orjson.loads(data)
        except orjson.JSONDecodeError:
            return response.status, {"body": data[:200].decode(errors="replace")}
    finally:
        conn.close()


def ask(port: int, token: str, text: str, bot: str = "default") -> str:
    user = f"bench-{secrets.token_hex(4)}"
    payload = {"user_id": user, "text": text}
    status, data = _request(port, "POST", PATH.format(bot=bot), token, payload)
    if status != 200:
        raise BenchError(f"{text!r} answered HTTP {status}: {data}")
    return " / ".join(r["text"] for r in data["replies"])


def write_bot(bots: Path) -> None:
    package = bots / "default.gbai" / "default.gbot"
    package.mkdir(parents=True)
    (package / "config.csv").write_text(
        "name,value\nbot-name,Help desk\nllm-cache,true\nllm-cache-ttl,3600\n"
        "llm-cache-semantic,true\nllm-cache-threshold,0.95\n"
    )
    (package / "PROMPT.md").write_text("You are the help desk of an online shop.\n")
    dialogs = bots / "talk.gbai" / "talk.gbdialog"
    dialogs.mkdir(parents=True)
    # It waits for the answer, so the model does not answer the first message too.
    (dialogs / "start.bas").write_text(f'TALK "{DIALOG_REPLY}"\nHEAR question\n')


# --------------------------------------------------------------------------- #
# The cache's own share: its lookups alone, in this process
# --------------------------------------------------------------------------- #


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q / 100 * len(ordered)))] * 1000

    return {"p50_ms": round(at(50), 3), "p99_ms": round(at(99), 3)}


async def lookup_costs(redis_url: str | None, count: int) -> dict[str, Any]:
    """``LLMCache.lookup`` of each tier ``count`` times, one at a time, on an idle loop: what
    the cache adds to a turn (the similarity tier's embedding, in an executor, included)."""
    embedder = load_local_embedder()
    if embedder is None:
        raise BenchError("the local embedding model (the local-model extra) is not installed")
    client = aioredis.Redis.from_url(redis_url) if redis_url else None
    prefix = f"bench:{secrets.token_hex(4)}:"
    store: AnswerStore = RedisAnswers(client, prefix=prefix) if client else MemoryAnswers()
    cache = LLMCache(store, embedder=embedder)
    settings = CacheSettings(enabled=True)
    base = CacheRequest(
        bot="default",
        question=QUESTION,
        model=[["compatible", "http://127.0.0.1/v1", "gpt-4o-mini", None, None]],
        system="You are the help desk of an online shop.",
        context=None,
        tools=(),
        collections=(),
    )
    try:
        await cache.store(await cache.lookup(base, settings), ANSWER, settings)
        out: dict[str, Any] = {}
        for tier, text in TIERS.items():
            request = replace(base, question=text)
            times = []
            for i in range(count + 20):
                t0 = time.perf_counter()
                found = await cache.lookup(request, settings)
                if i >= 20:  # after a warm-up
                    times.append(time.perf_counter() - t0)
                if found.tier != tier:
                    raise BenchError(f"{text!r}: a {found.tier} lookup, not {tier}")
            out[tier] = _percentiles(times)
        return out
    finally:
        if client is not None:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


# --------------------------------------------------------------------------- #
# Phases
# --------------------------------------------------------------------------- #


class Runner:
    """Runs load phases against a server with the load generator in its own process."""

    def __init__(self, tmp: Path, token: str) -> None:
        self.tmp = tmp
        self.token = token
        self.count = 0
        self.run_id = f"{os.getpid()}-{int(time.time())}"

    def phase(
        self,
        server: Server,
        label: str,
        kind: str,
        *,
        bot: str,
        text: str,
        mode: str,
        duration: float,
        connections: int,
        rate: float = 0.0,
    ) -> Phase:
        self.count += 1
        spec = {
            "host": HOST,
            "port": server.port,
            "token": self.token,
            "bot": bot,
            "mode": mode,
            "duration": duration,
            "connections": connections,
            "rate": rate,
            "messages": [text],  # one message per user: every request is a first question
            "max_requests": None,
            "user_prefix": f"c{self.run_id}-{self.count}-{label}",
            "start_at": time.time() + 0.6,
            "drain_timeout": 10.0,
            "watch": {"server": [server.pid], "postgres": server.pg_pids()},
            "result_path": str(self.tmp / f"loadgen-{self.count}.json"),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_llm_cache", "--loadgen", json.dumps(spec)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=duration + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise BenchError(f"load generator exited with {proc.returncode}")
        result = orjson.loads(Path(spec["result_path"]).read_bytes())
        return Phase(label, kind, [result], connections if mode == "closed" else 0)


def _median(values: Sequence[float]) -> float:
    return round(float(statistics.median(values)), 3)


def summarize(phases: list[Phase]) -> dict[str, Any]:
    """Medians over rounds: each server's capacity (best over the counts) and latency."""
    out: dict[str, Any] = {}
    levels = sorted({p.connections for p in phases if p.kind == "throughput"})
    for name in SERVERS:
        mine = [p for p in phases if p.server == name]
        by_level = {
            n: _median([p.rate for p in mine if p.kind == "throughput" and p.connections == n])
            for n in levels
        }
        best = max(by_level, key=lambda n: by_level[n])
        latency = [p for p in mine if p.kind == "latency"]
        out[name] = {
            "throughput": {str(n): rate for n, rate in by_level.items()},
            "capacity": by_level[best],
            "capacity_connections": best,
            "latency_rate": _median([p.rate for p in latency]),
            "latency_p50_ms": _median([p.percentile(50) for p in latency]),
            "latency_p99_ms": _median([p.percentile(99) for p in latency]),
            "from_send_p99_ms": _median([p.service_p99 for p in latency]),
            "cpu_us_per_request": round(
                statistics.median(
                    p.cpu("server") / max(p.total("completed"), 1) * 1e6
                    for p in mine
                    if p.kind == "throughput" and p.connections == best
                )
            ),
        }
    for name in SERVERS[:-1]:
        out[name]["ratio"] = round(out[name]["capacity"] / out["baseline"]["capacity"], 3)
    return out


def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "command": shlex.join(
            [Path(sys.executable).name, "-m", "bench.bench_llm_cache", *sys.argv[1:]]
        ),
        "machine": {
            "nproc": _nproc(),
            "cpu_model": _cpu_model(),
            "loadavg_at_start": (Path("/proc/loadavg").read_text().split()[:3]),
        },
        "settings": {
            "rounds": args.rounds,
            "phase_seconds": args.seconds,
            "connections": args.connections,
            "rate": args.rate,
            "similar_rate": args.similar_rate,
            "answers": "redis" if args.redis else "in-process",
        },
    }
    m = report["machine"]
    say("botserver semantic cache benchmark")
    say(f"command : {report['command']}   (in {ROOT})")
    say(f"machine : nproc={m['nproc']}, {m['cpu_model']}, load {' '.join(m['loadavg_at_start'])}")
    say(
        f"load    : closed loop at {', '.join(map(str, args.connections))} connections and open"
        f" loop at {args.rate:g} req/s ({args.similar_rate:g} for the similarity tier),"
        f" {args.seconds:g} s each, {args.rounds} round(s); medians"
    )
    say(f"answers : {report['settings']['answers']}; every request a new user's first question")
    say(f"          exact tier {EXACT!r}, similarity tier {SIMILAR!r}, primed with {QUESTION!r}")
    say()

    costs = asyncio.run(lookup_costs(args.redis, args.lookups))
    report["lookup"] = costs
    say(
        f"lookup  : the cache alone ({report['settings']['answers']}), p50/p99 ms: exact"
        f" {costs['exact']['p50_ms']:.3f}/{costs['exact']['p99_ms']:.3f}, similarity"
        f" {costs['similar']['p50_ms']:.2f}/{costs['similar']['p99_ms']:.2f} (embedding included)"
    )
    say()

    tmp = Path(tempfile.mkdtemp(prefix="botserver-bench-cache-"))
    token = secrets.token_urlsafe(24)
    model = ModelServer()
    servers: list[Server] = []
    try:
        model_url = model.start()
        write_bot(tmp / "bots")
        env = {
            k: v
            for k, v in _server_env().items()
            if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_PROVIDER", "BOTSERVER_BOTS")
        }
        env.update(
            LLM_URL=f"{model_url}/v1",
            LLM_KEY=fake_openai.API_KEY,
            LLM_MODEL="gpt-4o-mini",
            BOTSERVER_ADMIN_TOKEN=token,
        )
        if args.redis:
            env["REDIS_URL"] = args.redis
        gateway = gateway_server(args.botserver, tmp, env, bots=tmp / "bots")
        baseline = baseline_server(tmp)
        servers += [gateway, baseline]
        say(f"gateway ready in {gateway.start(timeout=args.start_timeout):.1f} s")
        baseline.start(timeout=30)

        primed = ask(gateway.port, token, QUESTION)
        for tier, text in TIERS.items():
            reply = ask(gateway.port, token, text)
            if reply != ANSWER:
                raise BenchError(f"{tier} tier: {text!r} answered {reply!r}, not the cached answer")
        if primed != ANSWER or model.requests != 1:
            raise BenchError(f"priming: {primed!r}, {model.requests} model requests")
        if (talked := ask(gateway.port, token, "hi", "talk")) != DIALOG_REPLY:
            raise BenchError(f"the dialog bot answered {talked!r}")
        say(f"primed  : > {QUESTION}\n          < {primed}")
        say("          both tiers answer it with no model request")
        say()

        runner = Runner(tmp, token)
        targets = {"exact": gateway, "similar": gateway, "dialog": gateway, "baseline": baseline}
        for name in SERVERS:  # warm-up: connections, statements, the embedding model
            runner.phase(
                targets[name],
                name,
                "warmup",
                bot=BOTS[name],
                text=TEXTS[name],
                mode="closed",
                duration=args.warmup,
                connections=max(args.connections),
            )
        # The similarity tier is offered less: each request embeds its question (~5 ms of a
        # core here), and an open loop above its capacity measures the queue, not the tier.
        rates = {name: args.rate for name in SERVERS} | {"similar": args.similar_rate}
        phases: list[Phase] = []
        for r in range(args.rounds):
            order = SERVERS if r % 2 == 0 else SERVERS[::-1]
            levels = args.connections if r % 2 == 0 else args.connections[::-1]
            runs = [("throughput", n, name) for n in levels for name in order]
            runs += [("latency", args.max_connections, name) for name in order]
            for kind, connections, name in runs:
                p = runner.phase(
                    targets[name],
                    name,
                    kind,
                    bot=BOTS[name],
                    text=TEXTS[name],
                    mode="closed" if kind == "throughput" else "open",
                    duration=args.seconds,
                    connections=connections,
                    rate=rates[name],
                )
                phases.append(p)
                label = (
                    f"{kind} x{connections}"
                    if kind == "throughput"
                    else f"latency {rates[name]:g}/s"
                )
                say(
                    f"round {r + 1} {label:16} {name:8} {p.rate:7.0f} req/s"
                    f"  p50 {p.percentile(50):6.2f} ms  p99 {p.percentile(99):6.2f} ms"
                    f"  errors {p.total('errors')}"
                )
        status, state = _request(gateway.port, "GET", STATE, token)
        if status != 200:
            raise BenchError(f"cache state answered HTTP {status}: {state}")
        counters = state["counters"]
        report["phases"] = [p.summary() for p in phases]
        report["results"] = summarize(phases)
        report["model_requests"] = model.requests
        report["cache_counters"] = counters
        report["errors"] = sum(p.total("errors") for p in phases)
        if model.requests != 1:  # a measured request reached the model: not a cache figure
            report["errors"] += model.requests - 1
        report["requests"] = {
            tier: sum(p.total("completed") for p in phases if p.server == tier) for tier in TIERS
        }
        _print_summary(report, say)
        return report
    finally:
        for server in servers:
            server.stop()
        model.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _print_summary(report: dict[str, Any], say: Any) -> None:
    r = report["results"]
    rates = {name: report["settings"]["rate"] for name in SERVERS}
    rates["similar"] = report["settings"]["similar_rate"]
    say("=" * 78)
    say(
        f"{'median of ' + str(report['settings']['rounds']) + ' round(s)':40}"
        + "".join(f"{name:>12}" for name in SERVERS)
    )
    for n in report["settings"]["connections"]:
        cells = "".join(f"{r[name]['throughput'][str(n)]:12.0f}" for name in SERVERS)
        say(f"{f'  throughput at {n} connections, req/s':40}{cells}")
    say(f"{'capacity (best), req/s':40}" + "".join(f"{r[s]['capacity']:12.0f}" for s in SERVERS))
    say(
        f"{'RATIO to the bare aiohttp handler':40}"
        + "".join(f"{r[t]['ratio']:12.3f}" for t in SERVERS[:-1])
    )
    say(
        f"{'server CPU per request at capacity, us':40}"
        + "".join(f"{r[s]['cpu_us_per_request']:12,}" for s in SERVERS)
    )
    say(f"{'open loop: offered, req/s':40}" + "".join(f"{rates[s]:12g}" for s in SERVERS))
    say(f"{'  latency p50 ms':40}" + "".join(f"{r[s]['latency_p50_ms']:12.2f}" for s in SERVERS))
    say(f"{'  latency p99 ms':40}" + "".join(f"{r[s]['latency_p99_ms']:12.2f}" for s in SERVERS))
    say(
        f"{'  p99 from the actual send, ms':40}"
        + "".join(f"{r[s]['from_send_p99_ms']:12.2f}" for s in SERVERS)
    )
    say(
        f"{'  achieved rate, req/s':40}" + "".join(f"{r[s]['latency_rate']:12.0f}" for s in SERVERS)
    )
    for tier, target in TARGET_P99_MS.items():
        p99 = r[tier]["latency_p99_ms"]
        say(
            f"  {tier} tier p99 {p99:.2f} ms, target < {target:g} ms: "
            f"{'PASS' if p99 < target else 'FAIL'}"
        )
    lookup = report["lookup"]
    say(
        f"  the lookup alone, p50/p99 ms: exact {lookup['exact']['p50_ms']:.3f}"
        f"/{lookup['exact']['p99_ms']:.3f}, similarity {lookup['similar']['p50_ms']:.2f}"
        f"/{lookup['similar']['p99_ms']:.2f} (embedding included)"
    )
    say("-" * 78)
    c = report["cache_counters"]
    say(
        f"model requests: {report['model_requests']} (the priming question); cache counters:"
        f" exact {c['exact']['hits']} hits / {c['exact']['misses']} misses, similar"
        f" {c['similar']['hits']} hits / {c['similar']['misses']} misses, errors {c['errors']}"
    )
    served = report["requests"]
    say(f"measured requests: exact {served['exact']:,}, similar {served['similar']:,}")
    if report["errors"]:
        say(f"INVALID RUN: {report['errors']} errors (non-200 answers, lost or unanswered)")
    else:
        say("errors: 0 (every request answered 200)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_llm_cache", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1.5 s phases")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.add_argument("--rounds", type=int, help="rounds (default 3)")
    p.add_argument("--seconds", type=float, help="length of each measured phase (default 5)")
    p.add_argument(
        "--connections",
        type=_counts,
        default=[32, 128],
        help="closed-loop connection counts, comma-separated (default %(default)s)",
    )
    p.add_argument("--rate", type=float, default=200.0, help="open-loop offered rate, req/s")
    p.add_argument("--similar-rate", type=float, default=50.0, help="the similarity tier's, req/s")
    p.add_argument("--max-connections", type=int, default=128, help="open-loop connection cap")
    p.add_argument("--redis", metavar="URL", help="keep the answers in this Redis")
    p.add_argument("--lookups", type=int, default=500, help="lookups of each tier, in process")
    p.add_argument("--start-timeout", type=float, default=90.0, help="seconds to wait for ready")
    p.add_argument("--botserver", type=Path, default=BOTSERVER, help="the botserver executable")
    p.add_argument("--loadgen", metavar="SPEC", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.loadgen:
        return _loadgen_main(args.loadgen)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (1.5 if args.quick else 5.0)
    args.warmup = 1.0 if args.quick else 2.0
    if args.quick and args.connections == [32, 128]:
        args.connections = [32]
    lines: list[str] = []

    def say(line: str = "") -> None:
        lines.append(line)
        if not args.json:
            print(line, flush=True)

    try:
        report = run(args, say)
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(report, indent=2))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
