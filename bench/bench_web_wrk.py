"""The web API measured as a new user would measure it: wrk against the gateway and a bare
aiohttp handler, in one run.

    python -m bench.bench_web_wrk              # 3 rounds of 10 s, ~3 minutes
    python -m bench.bench_web_wrk --quick      # 1 round of 3 s, under a minute
    python -m bench.bench_web_wrk --json       # the same figures as one JSON document

Needs Debian's ``wrk``. Starts ``botserver serve`` on its embedded defaults with a fresh
data folder (so the first phase is a cold start: every user's session is created then)
and the baseline (:mod:`bench.baseline_server`), then, with 1 wrk thread and 32
connections, each request from a random one of 2,000 users sending one line of text
(the gateway finds the user's session by the user id, as a client that keeps no session
id does):

* cold: the first seconds against the fresh gateway, while the 2,000 sessions are
  created (and the baseline the same seconds, for its ratio);
* a warm-up of both, not recorded;
* rounds, gateway and baseline alternating: turns/s, wrk's latency p50/p99, and the CPU
  per turn of the gateway and of its PostgreSQL;
* latency at a fixed offered rate (1,000 requests/s), open loop: wrk waits for each
  answer before it sends the next request on its connection, so it cannot offer a rate;
  ``bench_web``'s load generator sends each request at its scheduled time, the same
  2,000 users drawn at random, and counts latency from that time; then the same with
  2,000 users the gateway has not met (their sessions are created meanwhile).

The ratio is the gateway's median turns/s over the baseline's, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_web import (
    BOTSERVER,
    HOST,
    PATH,
    ROOT,
    TICKS,
    TOKEN,
    Bench,
    BenchError,
    Server,
    _cpu_model,
    _cpu_ticks,
    _nproc,
    _read,
    _server_env,
    baseline_server,
    gateway_server,
    smoke_dialog,
)

LINE = "hello, what can you do?"
USERS_PREFIX = "wrk-user"
# bench_web's load generator names its users <prefix>-c0-N (the share of its first
# process): wrk's are named the same, so that the latency phase meets the users wrk met.
WRK_USERS = f"{USERS_PREFIX}-c0"

# Each request a random one of USERS users sending LINE; done() prints one JSON line.
WRK_SCRIPT = """
local token = os.getenv("BENCH_TOKEN")
local users = tonumber(os.getenv("BENCH_USERS"))
local prefix = os.getenv("BENCH_PREFIX")
local line = os.getenv("BENCH_LINE")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
math.randomseed(os.time())
request = function()
  local body = string.format('{"user_id":"%s-%d","text":"%s"}', prefix,
                             math.random(1, users), line)
  return wrk.format(nil, os.getenv("BENCH_PATH"), nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk(
    server: Server, script: Path, *, seconds: float, connections: int, users: int
) -> dict[str, Any]:
    """One wrk run against ``server``: requests/s, latency, errors and the CPU per turn of
    the server and of its PostgreSQL (none for the baseline)."""
    env = dict(os.environ)
    env.update(
        BENCH_TOKEN=TOKEN,
        BENCH_USERS=str(users),
        BENCH_PREFIX=WRK_USERS,
        BENCH_LINE=LINE,
        BENCH_PATH=PATH,
    )
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script)]
    argv.append(f"http://{HOST}:{server.port}/")
    watch = {"server": [server.pid], "postgres": server.pg_pids()}
    before = _cpu_ticks(watch)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    after = _cpu_ticks(watch)
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    lines = [x for x in done.stdout.splitlines() if x.startswith('{"requests"')]
    if not lines:
        raise BenchError(f"wrk printed no summary:\n{done.stdout}")
    result: dict[str, Any] = json.loads(lines[-1])
    requests = result["requests"]
    errors = sum(result["errors"].values())
    result["server"] = server.name
    result["rate"] = requests / (result["duration_us"] / 1e6)
    result["error_count"] = errors
    result["cpu_us_per_turn"] = {
        name: round((after[name] - before[name]) / TICKS / requests * 1e6) if requests else None
        for name in watch
    }
    return result


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    loadavg = (_read("/proc/loadavg") or "").split()[:3]
    report: dict[str, Any] = {
        "command": shlex.join(
            [Path(sys.executable).name, "-m", "bench.bench_web_wrk", *sys.argv[1:]]
        ),
        "machine": {
            "nproc": _nproc(),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_at_start": loadavg,
        },
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "cold_seconds": args.cold_seconds,
            "connections": args.connections,
            "users": args.users,
            "rate": args.rate,
        },
    }
    m = report["machine"]
    say("botserver web benchmark with wrk")
    say(f"command : {report['command']}   (in {ROOT})")
    say(f"machine : nproc={m['nproc']}, {m['cpu_model']}, Linux {m['kernel']},")
    say(f"          Python {m['python']}, load average at start {' '.join(loadavg)}")
    say(
        f"load    : wrk -t1 -c{args.connections}, each request a random one of {args.users}"
        f" users sending {LINE!r}; {args.rounds} round(s) of {args.seconds:g} s, alternating;"
    )
    say(f"          latency: open loop at {args.rate:g} req/s (bench_web's load generator)")
    say()

    tmp = Path(tempfile.mkdtemp(prefix="botserver-bench-"))
    script = tmp / "web.lua"
    script.write_text(WRK_SCRIPT)
    servers: list[Server] = []
    bench = Bench(argparse.Namespace(clients=1), tmp)
    try:
        gateway = gateway_server(args.botserver, tmp, _server_env())
        baseline = baseline_server(tmp)
        servers += [gateway, baseline]
        gateway.start(timeout=args.start_timeout)
        baseline.start(timeout=30)
        for server in servers:
            say(f"{server.name} smoke dialog:")
            for line in smoke_dialog(server):
                say("  " + line)
        say()

        def measure(server: Server, seconds: float) -> dict[str, Any]:
            return wrk(
                server, script, seconds=seconds, connections=args.connections, users=args.users
            )

        def show(label: str, r: dict[str, Any]) -> None:
            cpu = r["cpu_us_per_turn"]
            pg = f", PostgreSQL {cpu['postgres']} us" if r["server"] == "gateway" else ""
            say(
                f"  {label:<12} {r['server']:<8} {r['rate']:>9,.0f} turns/s"
                f"  p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms"
                f"  errors {r['error_count']}  CPU/turn: server {cpu['server']} us{pg}"
            )

        # Cold: the fresh gateway meets the users for the first time (sessions created).
        cold = [measure(gateway, args.cold_seconds), measure(baseline, args.cold_seconds)]
        for r in cold:
            show("cold", r)
        for server in servers:  # warm-up, not recorded
            measure(server, args.warmup)

        rounds: list[dict[str, Any]] = []
        for i in range(args.rounds):
            order = servers if i % 2 == 0 else servers[::-1]
            for server in order:
                r = measure(server, args.seconds)
                rounds.append(r)
                show(f"round {i + 1}", r)

        # The users wrk met, then as many new ones (their sessions created meanwhile).
        latency: list[dict[str, Any]] = []
        latency_new: list[dict[str, Any]] = []
        for i in range(args.rounds):
            order = servers if i % 2 == 0 else servers[::-1]
            for kind, prefix, into in (
                ("latency", USERS_PREFIX, latency),
                ("lat. new", f"wrk-new{i}", latency_new),
            ):
                for server in order:
                    p = bench.phase(
                        server,
                        "latency",
                        mode="open",
                        duration=args.seconds,
                        connections=64,
                        rate=args.rate,
                        messages=[LINE],
                        users=args.users,
                        user_prefix=prefix,
                    )
                    s = p.summary()
                    into.append(s)
                    say(
                        f"  {kind:<12} {server.name:<8} {s['rate']:>9,.0f} of {args.rate:g}/s"
                        f"  p50 {s['p50_ms']:6.2f} ms  p99 {s['p99_ms']:6.2f} ms"
                        f"  errors {s['errors']}"
                    )
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def open_loop(phases: list[dict[str, Any]], server: str) -> dict[str, Any]:
        mine = [s for s in phases if s["server"] == server]
        return {
            "served_per_s": round(_median([s["rate"] for s in mine]), 1),
            "p50_ms": round(_median([s["p50_ms"] for s in mine]), 2),
            "p99_ms": round(_median([s["p99_ms"] for s in mine]), 2),
            "errors": sum(s["errors"] for s in mine),
        }

    def summary(server: str) -> dict[str, Any]:
        mine = [r for r in rounds if r["server"] == server]
        return {
            "turns_per_s": round(_median([r["rate"] for r in mine]), 1),
            "p99_ms": round(_median([r["p99_us"] / 1000 for r in mine]), 2),
            "errors": sum(r["error_count"] for r in mine),
            "cpu_us_per_turn": {
                k: _median([r["cpu_us_per_turn"][k] or 0 for r in mine])
                for k in mine[0]["cpu_us_per_turn"]
            },
            "open_loop": open_loop(latency, server),
            "open_loop_new_users": open_loop(latency_new, server),
        }

    g, b = summary("gateway"), summary("baseline")
    ratio = g["turns_per_s"] / b["turns_per_s"] if b["turns_per_s"] else float("nan")
    cold_ratio = cold[0]["rate"] / cold[1]["rate"] if cold[1]["rate"] else float("nan")
    report.update(
        cold=cold,
        rounds=rounds,
        latency=latency,
        latency_new_users=latency_new,
        gateway=g,
        baseline=b,
        ratio=round(ratio, 3),
        cold_ratio=round(cold_ratio, 3),
    )
    say()
    say(f"{'medians':<34}{'gateway':>14}{'baseline':>14}{'ratio':>9}")
    say(
        f"{'turns/s, 32 connections':<34}{g['turns_per_s']:>14,.0f}{b['turns_per_s']:>14,.0f}"
        f"{ratio:>9.3f}   (target >= 0.4)"
    )
    say(
        f"{'  cold, first ' + format(args.cold_seconds, 'g') + ' s':<34}"
        f"{cold[0]['rate']:>14,.0f}{cold[1]['rate']:>14,.0f}{cold_ratio:>9.3f}"
    )
    say(f"{'wrk p99, ms':<34}{g['p99_ms']:>14.2f}{b['p99_ms']:>14.2f}")
    say(
        f"{'open loop ' + format(args.rate, 'g') + '/s: p50 / p99, ms':<34}"
        f"{g['open_loop']['p50_ms']:>7.2f} /{g['open_loop']['p99_ms']:>5.2f}"
        f"{b['open_loop']['p50_ms']:>7.2f} /{b['open_loop']['p99_ms']:>5.2f}   (target p99 < 10)"
    )
    gn, bn = g["open_loop_new_users"], b["open_loop_new_users"]
    say(
        f"{'  the same, 2,000 new users':<34}"
        f"{gn['p50_ms']:>7.2f} /{gn['p99_ms']:>5.2f}"
        f"{bn['p50_ms']:>7.2f} /{bn['p99_ms']:>5.2f}"
    )
    cpu = g["cpu_us_per_turn"]
    label = "CPU per turn: gateway / PostgreSQL"
    say(f"{label:<34}{cpu['server']:>8.0f} / {cpu['postgres']:.0f} us")
    errors = g["errors"] + b["errors"] + g["open_loop"]["errors"] + b["open_loop"]["errors"]
    errors += gn["errors"] + bn["errors"]
    errors += sum(r["error_count"] for r in cold)
    if errors:
        say(f"errors: {errors} (a run with errors does not count)")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--cold-seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--start-timeout", type=float, default=120.0)
    p.add_argument("--botserver", type=Path, default=BOTSERVER)
    p.add_argument("--quick", action="store_true", help="1 round of 3 s")
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.cold_seconds, args.warmup = 1, 3.0, 3.0, 2.0

    def say(line: str = "") -> None:
        if not args.json:
            print(line, flush=True)

    started = time.perf_counter()
    try:
        report = run(args, say)
    except BenchError as e:
        print(f"bench_web_wrk: {e}", file=sys.stderr)
        return 1
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
