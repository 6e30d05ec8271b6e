"""Telegram webhook benchmark: the gateway against python-telegram-bot's webhook server.

    python -m bench.bench_webhooks            # 3 rounds of 10 s at 500 webhooks/s, ~2-3 min
    python -m bench.bench_webhooks --quick    # smoke run: 1 round of 2 s at 200/s, < 30 s
    python -m bench.bench_webhooks --json     # the same figures as one JSON document

Three kinds of process besides this one, each its own:

* a fake Telegram Bot API (``tests/channels/fake_telegram.py``, one server per
  bot token) that records every ``sendMessage`` with its arrival time;
* the server under test: ``botserver serve`` on its embedded defaults (its
  own PostgreSQL under a fresh data directory) with ``--bots`` bots whose
  start dialog greets, then echoes every line; or python-telegram-bot's
  ``Application.run_webhook`` with an echo handler (``concurrent_updates``),
  both pointed at the fake through the Bot API base URL;
* the load generator: an open loop of Telegram updates at ``--rate`` per
  second, each sent on its schedule whatever the answers (latency from the
  scheduled time: no coordinated omission), over keep-alive connections.

Measured per phase: the webhook's acknowledgement latency (the gateway
answers 200 only once the message is claimed in the inbox; python-telegram-bot
once the update is in its in-memory queue), p50 and p99; whether every
message was answered exactly once (counted at the fake by its unique text);
inbound-to-outbound messages per second (replies at the fake over the time
from the first webhook sent to the last reply arrived) and the reply latency
(webhook sent to reply at the fake). Servers alternate over ``--rounds``
rounds; the table gives medians. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
BOTSERVER = Path(sys.executable).parent / "botserver"
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
SECRET = "bench_webhook_secret-1"
SERVERS = ("gateway", "ptb")
LABELS = {"gateway": "gateway", "ptb": "python-telegram-bot"}
PTB_PATH = "/webhook"
# The gateway's start dialog: a greeting on a chat's first message, then an echo of each
# line, as the python-telegram-bot handler echoes.
DIALOG = """\
TALK "Hello."
n = 0
DO WHILE n >= 0
    HEAR line
    TALK line
LOOP
"""


def token(i: int) -> str:
    """A distinct bot token of BotFather's shape for bot ``i``."""
    return f"{700000000 + i}:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


class BenchError(Exception):
    """The benchmark could not run (a process did not start, a check failed)."""


# --------------------------------------------------------------------------- #
# The fake Bot API (``--fake SPEC``, its own process)
# --------------------------------------------------------------------------- #


async def _fake_main(spec: dict[str, Any]) -> None:
    from aiohttp import web

    from tests.channels.fake_telegram import FakeBotApi

    sent: list[tuple[int, str, float]] = []

    class Recording(FakeBotApi):
        async def _sendmessage(self, params: dict[str, Any]) -> Any:
            message = await super()._sendmessage(params)
            sent.append((message["chat"]["id"], message["text"], time.time()))
            return message

    fakes = [Recording(token=token(i)) for i in range(spec["bots"])]
    urls = [await fake.start() for fake in fakes]

    async def since(request: web.Request) -> web.Response:
        start = int(request.query.get("from", "0"))
        return web.Response(body=orjson.dumps(sent[start:]), content_type="application/json")

    app = web.Application()
    app.router.add_get("/sent", since)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    control = runner.addresses[0][1]
    print(json.dumps({"api_urls": urls, "control_port": control}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    for fake in fakes:
        await fake.close()


# --------------------------------------------------------------------------- #
# python-telegram-bot's webhook server (``--ptb SPEC``, its own process)
# --------------------------------------------------------------------------- #


def _ptb_main(spec: dict[str, Any]) -> int:
    from telegram import Update
    from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.message.text is not None
        await update.message.reply_text(update.message.text)

    app = (
        ApplicationBuilder()
        .token(spec["token"])
        .base_url(spec["api_url"])
        .concurrent_updates(True)
        .connection_pool_size(64)
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT, echo))
    app.run_webhook(
        listen=HOST,
        port=spec["port"],
        url_path=PTB_PATH.lstrip("/"),
        secret_token=SECRET,
        webhook_url=f"https://bench.invalid{PTB_PATH}",  # told to the fake, never called
        stop_signals=(signal.SIGTERM, signal.SIGINT),
    )
    return 0


# --------------------------------------------------------------------------- #
# Load generator (``--loadgen SPEC``, its own process)
# --------------------------------------------------------------------------- #


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, gen: _LoadGenerator) -> None:
        self.gen = gen
        self.transport: Any = None
        self.buffer = bytearray()
        self.scheduled: float | None = None
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes, scheduled: float) -> None:
        self.scheduled = scheduled
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : line_end if line_end > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            self.gen.completed(self, int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gen.lost(self, exc)


class _LoadGenerator:
    """Open loop: update ``i`` is due at ``start + i / rate``, to chat ``i % chats``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.idle: list[_Connection] = []
        self.pending: deque[tuple[bytes, float]] = deque()
        self.connections = 0
        self.in_flight = 0
        self.drained = asyncio.Event()

    def request(self, i: int) -> bytes:
        spec = self.spec
        chat = spec["chats"][i % len(spec["chats"])]
        path = spec["paths"][chat % len(spec["paths"])]
        update_id = spec["first_update_id"] + i
        text = spec["texts"][i] if "texts" in spec else f"{spec['tag']}-{i}"
        body = orjson.dumps(
            {
                "update_id": update_id,
                "message": {
                    "message_id": update_id,
                    "from": {"id": chat, "is_bot": False, "first_name": "Ada"},
                    "chat": {"id": chat, "first_name": "Ada", "type": "private"},
                    "date": int(time.time()),
                    "text": text,
                },
            }
        )
        return (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{spec['port']}\r\n"
            f"Content-Type: application/json\r\nX-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def completed(self, conn: _Connection, status: int) -> None:
        now = time.perf_counter()
        assert conn.scheduled is not None
        self.in_flight -= 1
        self.statuses[status] += 1
        if status == 200:
            self.latencies.append(now - conn.scheduled)
        elif len(self.errors) < 5:
            self.errors.append(f"HTTP {status}")
        conn.scheduled = None
        self._next(conn)

    def lost(self, conn: _Connection, exc: Exception | None) -> None:
        self.connections -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.scheduled is not None:
            self.in_flight -= 1
            self.statuses[0] += 1
            self.errors.append(f"connection lost mid-request: {exc!r}")
        self._check_drained()

    def _next(self, conn: _Connection) -> None:
        if conn.closed:
            return
        if self.pending:
            request, scheduled = self.pending.popleft()
            self.in_flight += 1
            conn.send(request, scheduled)
            return
        self.idle.append(conn)
        self._check_drained()

    def _check_drained(self) -> None:
        if self.in_flight == 0 and not self.pending:
            self.drained.set()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.connections += 1
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self), HOST, self.spec["port"]
            )
        except OSError as e:
            self.connections -= 1
            self.errors.append(f"connect failed: {e!r}")
            return
        self._next(conn)

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        rate, n = spec["rate"], spec["count"]
        await asyncio.gather(*(self._connect() for _ in range(min(16, spec["connections"]))))
        requests = [self.request(i) for i in range(n)]  # built ahead: no JSON on the schedule
        cpu0 = time.process_time()
        start = time.perf_counter() + 0.01
        wall_start = time.time() + (start - time.perf_counter())
        i = 0
        while i < n:
            now = time.perf_counter()
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
                now = time.perf_counter()
            while i < n and start + i / rate <= now:
                scheduled = start + i / rate
                if self.idle:
                    self.in_flight += 1
                    self.idle.pop().send(requests[i], scheduled)
                else:
                    self.pending.append((requests[i], scheduled))
                    if self.connections < spec["connections"]:
                        asyncio.get_running_loop().create_task(self._connect())
                i += 1
        self.drained.clear()
        self._check_drained()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(spec["drain_timeout"]):
                await self.drained.wait()
        unanswered = self.in_flight + len(self.pending)
        for conn in self.idle:
            conn.transport.close()
        return {
            "count": n,
            "wall_start": wall_start,
            "elapsed": time.perf_counter() - start,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "unanswered": unanswered,
            "errors": self.errors,
            "latencies": [round(x, 7) for x in self.latencies],
            "client_cpu": time.process_time() - cpu0,
        }


def _loadgen_main(spec: dict[str, Any]) -> int:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_LoadGenerator(spec).run())
    sys.stdout.write(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- #
# Processes
# --------------------------------------------------------------------------- #


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _transaction_ids(pgdata: Path) -> int | None:
    """The next transaction id of the PostgreSQL on ``pgdata`` (over its socket): every
    committed write takes one, so two readings count the writing transactions between
    them (this reading takes one itself). ``None`` when it cannot be read."""
    import asyncpg

    async def read() -> int:
        conn = await asyncpg.connect(host=str(pgdata), user="postgres", database="postgres")
        try:
            value: int = await conn.fetchval("SELECT txid_current()")
            return value
        finally:
            await conn.close()

    try:
        return asyncio.run(read())
    except (OSError, asyncpg.PostgresError):
        return None


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster on ``pgdata`` (found by its ``-D`` argument: pg_ctl daemonizes it, so
    it is not the gateway's child) and every process below it."""
    target = str(pgdata)
    children = _children()
    for pid in (p for ps in children.values() for p in ps):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").rstrip("\0").split("\0")
        except OSError:
            continue
        if Path(argv[0]).name in ("postgres", "postmaster") and any(
            a == "-D" and i + 1 < len(argv) and argv[i + 1].rstrip("/") == target
            for i, a in enumerate(argv)
        ):
            out, todo = [pid], list(children.get(pid, []))
            while todo:
                child = todo.pop()
                out.append(child)
                todo += children.get(child, [])
            return out
    return []


@dataclass
class Process:
    """A helper process in its own session, stopped for sure on exit."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, stdout_pipe: bool = False) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log if stdout_pipe else subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_port(self, port: int, path: str, timeout: float) -> float:
        """Wait until ``GET path`` gets any answer (or 200 for ``/ready``)."""
        t0 = time.perf_counter()
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited before ready; log tail:\n{self.log_tail()}")
            status = _get_status(port, path)
            if status is not None and (path != "/ready" or status == 200):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise BenchError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _get_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _sent(control_port: int, start: int) -> list[tuple[int, str, float]]:
    conn = http.client.HTTPConnection(HOST, control_port, timeout=10)
    try:
        conn.request("GET", f"/sent?from={start}")
        return [(int(c), str(t), float(at)) for c, t, at in orjson.loads(conn.getresponse().read())]
    finally:
        conn.close()


def write_bots(folder: Path, api_urls: list[str]) -> list[str]:
    """One bot package per fake token; returns the bots' names."""
    names = []
    for i, url in enumerate(api_urls):
        name = f"tg{i:02d}"
        package = folder / f"{name}.gbai"
        (package / f"{name}.gbdialog").mkdir(parents=True)
        (package / f"{name}.gbot").mkdir()
        (package / f"{name}.gbdialog" / "start.bas").write_text(DIALOG)
        config = {
            "telegram-bot-token": token(i),
            "telegram-webhook-secret": SECRET,
            "telegram-api-url": url,
        }
        rows = "".join(f"{k},{v}\n" for k, v in config.items())
        (package / f"{name}.gbot" / "config.csv").write_text("name,value\n" + rows)
        names.append(name)
    return names


# --------------------------------------------------------------------------- #
# Phases
# --------------------------------------------------------------------------- #


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, max(0, round(q / 100 * len(data)) - 1))] * 1000


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.update_ids = 1
        self.sent_seen = 0
        self.replies: list[tuple[int, str, float]] = []
        self.fake: Process | None = None
        self.control_port = 0
        self.servers: dict[str, tuple[Process, int, list[str]]] = {}

    def _python(self, mode: str, spec: dict[str, Any]) -> list[str]:
        return [sys.executable, "-m", "bench.bench_webhooks", mode, json.dumps(spec)]

    def start_fake(self) -> list[str]:
        self.fake = Process(
            "fake Bot API", self._python("--fake", {"bots": self.args.bots}), self.tmp / "fake.log"
        )
        self.fake.start(stdout_pipe=True)
        assert self.fake.process is not None and self.fake.process.stdout is not None
        line = self.fake.process.stdout.readline()
        if not line:
            raise BenchError(f"the fake Bot API did not start:\n{self.fake.log_tail()}")
        info = json.loads(line)
        self.control_port = info["control_port"]
        urls: list[str] = info["api_urls"]
        return urls

    def start_gateway(self, api_urls: list[str]) -> None:
        bots = write_bots(self.tmp / "bots", api_urls)
        port = _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("BOTSERVER_")
        }
        # Thousands of webhooks a second from one address: what is measured is the gateway,
        # not its webhook rate limit (100/s per address and bot by default).
        env["BOTSERVER_RATE_LIMITS"] = "off"
        server = Process(
            "gateway",
            [
                str(self.args.botserver),
                "serve",
                "--host",
                HOST,
                "--port",
                str(port),
                "--bots",
                str(self.tmp / "bots"),
                "--data-dir",
                str(self.tmp / "data"),
            ],
            self.tmp / "gateway.log",
            env,
        )
        server.start()
        server.wait_port(port, "/ready", self.args.start_timeout)
        self.servers["gateway"] = (server, port, [f"/webhooks/telegram/{b}" for b in bots])

    def start_ptb(self, api_url: str) -> None:
        port = _free_port()
        spec = {"token": token(0), "api_url": api_url, "port": port}
        server = Process("ptb", self._python("--ptb", spec), self.tmp / "ptb.log")
        server.start()
        server.wait_port(port, PTB_PATH, self.args.start_timeout)
        self.servers["ptb"] = (server, port, [PTB_PATH])

    def collect(self) -> None:
        new = _sent(self.control_port, self.sent_seen)
        self.sent_seen += len(new)
        self.replies += new

    def load(
        self, server: str, chats: list[int], count: int, rate: float, tag: str, **extra: Any
    ) -> dict[str, Any]:
        _, port, paths = self.servers[server]
        spec = {
            "port": port,
            "paths": paths,
            "chats": chats,
            "rate": rate,
            "count": count,
            "tag": tag,
            "first_update_id": self.update_ids,
            "connections": self.args.connections,
            "drain_timeout": 30.0,
            **extra,
        }
        self.update_ids += count
        out = subprocess.run(
            self._python("--loadgen", spec), cwd=ROOT, capture_output=True, check=False
        )
        if out.returncode != 0:
            raise BenchError(f"load generator failed:\n{out.stderr.decode()[-2000:]}")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def wait_replies(self, expected: set[tuple[int, str]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.collect()
            got = {(c, t) for c, t, _ in self.replies}
            if expected <= got:
                time.sleep(0.3)  # a duplicate arriving late is counted too
                self.collect()
                return
            time.sleep(0.2)
        self.collect()

    def warm_up(self, server: str, chats: list[int]) -> None:
        """Each chat's first message ("hi": the gateway creates its session and greets)."""
        rate = self.args.rate
        texts = ["hi"] * len(chats)
        result = self.load(server, chats, len(chats), rate, f"warm-{server}", texts=texts)
        if result["statuses"].get("200", 0) != len(chats):
            raise BenchError(f"{server} warm-up: {result['statuses']} {result['errors']}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.collect()
            greeted = {c for c, _, _ in self.replies}
            if greeted >= set(chats):
                return
            time.sleep(0.2)
        raise BenchError(f"{server} warm-up: not every chat was answered in 60 s")

    def phase(self, server: str, chats: list[int], round_no: int) -> dict[str, Any]:
        rate, seconds = self.args.rate, self.args.seconds
        count = int(rate * seconds)
        tag = f"{server}{round_no}"
        first_reply = len(self.replies)
        pid = self.servers[server][0].pid
        pg = postgres_pids(self.tmp / "data" / "postgres") if server == "gateway" else []
        watched = [pid, *pg]
        server_cpu0, all_cpu0 = _cpu_seconds([pid]), _cpu_seconds(watched)
        pgdata = self.tmp / "data" / "postgres"
        xid0 = _transaction_ids(pgdata) if server == "gateway" else None
        assert self.fake is not None
        fake_cpu0 = _cpu_seconds([self.fake.pid])
        result = self.load(server, chats, count, rate, tag)
        expected = {(chats[i % len(chats)], f"{tag}-{i}") for i in range(count)}
        self.wait_replies(expected, timeout=60)
        mine = [r for r in self.replies[first_reply:] if r[1].startswith(tag + "-")]
        counts = Counter((c, t) for c, t, _ in mine)
        answered_once = sum(1 for key in expected if counts.get(key) == 1)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        missing = sum(1 for key in expected if key not in counts)
        wall_start = result["wall_start"]
        arrival = {t: at for _, t, at in mine}
        reply_latencies = [
            arrival[f"{tag}-{i}"] - (wall_start + i / rate)
            for i in range(count)
            if f"{tag}-{i}" in arrival
        ]
        last = max(arrival.values()) if arrival else wall_start
        server_cpu = _cpu_seconds([pid]) - server_cpu0
        other_cpu = _cpu_seconds(watched) - all_cpu0 - server_cpu
        fake_cpu = _cpu_seconds([self.fake.pid]) - fake_cpu0
        xid1 = _transaction_ids(pgdata) if xid0 is not None else None
        ok = result["statuses"].get("200", 0)
        return {
            "server": server,
            "round": round_no,
            "webhooks": count,
            "acknowledged": ok,
            "errors": count - ok,
            "error_samples": result["errors"],
            "ack_p50_ms": _percentile(result["latencies"], 50),
            "ack_p99_ms": _percentile(result["latencies"], 99),
            "achieved_rate": count / result["elapsed"],
            "answered_once": answered_once,
            "duplicates": duplicates,
            "missing": missing,
            "out_per_s": len(arrival) / max(last - wall_start, 1e-9),
            "reply_p50_ms": _percentile(reply_latencies, 50),
            "reply_p99_ms": _percentile(reply_latencies, 99),
            "drain_s": max(0.0, last - (wall_start + (count - 1) / rate)),
            # CPU per message over the phase and the wait for its replies: the server, the
            # gateway's embedded PostgreSQL, the fake Bot API and the load generator.
            "cpu_us_per_message": server_cpu / count * 1e6,
            "pg_cpu_us_per_message": other_cpu / count * 1e6,
            "fake_cpu_us_per_message": fake_cpu / count * 1e6,
            "client_cpu_us_per_message": result["client_cpu"] / count * 1e6,
            "client_cpu_s": result["client_cpu"],
            # Writing transactions (commits) of the gateway's PostgreSQL per message.
            "commits_per_message": (xid1 - xid0 - 1) / count
            if xid0 is not None and xid1 is not None
            else None,
        }


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def summarize(phases: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "ack_p50_ms",
        "ack_p99_ms",
        "achieved_rate",
        "out_per_s",
        "reply_p50_ms",
        "reply_p99_ms",
        "drain_s",
        "cpu_us_per_message",
        "pg_cpu_us_per_message",
        "fake_cpu_us_per_message",
        "client_cpu_us_per_message",
    )
    out: dict[str, Any] = {}
    for server in SERVERS:
        rows = [p for p in phases if p["server"] == server]
        if not rows:
            continue
        entry: dict[str, Any] = {k: _median(rows, k) for k in keys}
        commits = [r["commits_per_message"] for r in rows if r["commits_per_message"] is not None]
        entry["commits_per_message"] = statistics.median(commits) if commits else None
        for k in ("webhooks", "acknowledged", "errors", "answered_once", "duplicates", "missing"):
            entry[k] = sum(r[k] for r in rows)
        out[server] = entry
    if "gateway" in out and "ptb" in out:
        g, p = out["gateway"], out["ptb"]
        out["ratio"] = {
            "ack_p50": g["ack_p50_ms"] / p["ack_p50_ms"],
            "ack_p99": g["ack_p99_ms"] / p["ack_p99_ms"],
            "out_per_s": g["out_per_s"] / p["out_per_s"],
        }
    return out


def _print_table(report: dict[str, Any]) -> None:
    s = report["settings"]
    r = report["results"]
    servers = [x for x in SERVERS if x in r]
    print("=" * 86)
    print(
        f"median of {s['rounds']} round(s) of {s['seconds']:g} s at {s['rate']:g} webhooks/s;"
        f" gateway: {s['bots']} bots, {s['chats']} chats"
    )
    print(f"{'':40}" + "".join(f"{LABELS[x]:>20}" for x in servers) + f"{'ratio':>10}")

    def row(label: str, key: str, fmt: str, ratio: str | None = None) -> None:
        cells = "".join(f"{format(r[x][key], fmt):>20}" for x in servers)
        ratio_cell = f"{r['ratio'][ratio]:10.2f}" if ratio and "ratio" in r else ""
        print(f"{label:40}{cells}{ratio_cell}")

    row("webhook acknowledged, p50 ms", "ack_p50_ms", ".2f", "ack_p50")
    row("webhook acknowledged, p99 ms", "ack_p99_ms", ".2f", "ack_p99")
    row("  achieved rate, webhooks/s", "achieved_rate", ".0f")
    row("inbound-to-outbound messages/s", "out_per_s", ".0f", "out_per_s")
    row("reply at the fake, p50 ms", "reply_p50_ms", ".1f")
    row("reply at the fake, p99 ms", "reply_p99_ms", ".1f")
    row("  last reply after the last webhook, s", "drain_s", ".2f")
    row("CPU per message, us: server", "cpu_us_per_message", ",.0f")
    row("                     its PostgreSQL", "pg_cpu_us_per_message", ",.0f")
    commits = "".join(
        f"{format(r[x]['commits_per_message'], '.2f') if r[x]['commits_per_message'] else '':>20}"
        for x in servers
    )
    print(f"{'  its commits per message':40}{commits}")
    row("                     fake Bot API", "fake_cpu_us_per_message", ",.0f")
    row("                     load generator", "client_cpu_us_per_message", ",.0f")
    print("-" * 86)
    for x in servers:
        e = r[x]
        print(
            f"{LABELS[x]}: {e['acknowledged']}/{e['webhooks']} acknowledged 200,"
            f" {e['answered_once']} answered exactly once, {e['duplicates']} duplicates,"
            f" {e['missing']} missing"
        )
    if report["valid"]:
        print("every webhook acknowledged 200 and every message answered exactly once")
    else:
        print("INVALID RUN: errors, duplicates or missing replies (see above)")
    if "ratio" in r:
        print(
            f"ratio gateway / python-telegram-bot: ack p50 {r['ratio']['ack_p50']:.2f},"
            f" ack p99 {r['ratio']['ack_p99']:.2f}, messages/s {r['ratio']['out_per_s']:.2f}"
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench_webhooks_")).resolve()
    bench = Bench(args, tmp)
    phases: list[dict[str, Any]] = []
    try:
        api_urls = bench.start_fake()
        say = (lambda *_: None) if args.json else print
        t0 = time.perf_counter()
        bench.start_gateway(api_urls)
        say(f"gateway ready in {time.perf_counter() - t0:.1f} s ({args.bots} bots)")
        servers = ["gateway"]
        if args.no_ptb:
            say("python-telegram-bot: skipped (--no-ptb)")
        elif _has_tornado():
            bench.start_ptb(api_urls[0])
            servers.append("ptb")
        else:
            say(
                "python-telegram-bot: its webhook server needs tornado"
                " (pip install 'python-telegram-bot[webhooks]'); skipped"
            )
        # Each chat gets a message every chats/rate seconds: under Telegram's one per second
        # per chat, which the gateway's delivery keeps to.
        chats = {
            server: [(1 + k) * 100_000 + c for c in range(args.chats)]
            for k, server in enumerate(servers)
        }
        for server in servers:
            bench.warm_up(server, chats[server])
            say(f"{LABELS[server]}: warmed up ({args.chats} chats greeted)")
        for round_no in range(1, args.rounds + 1):
            order = servers if round_no % 2 else list(reversed(servers))
            for server in order:
                p = bench.phase(server, chats[server], round_no)
                phases.append(p)
                say(
                    f"round {round_no} {LABELS[server]:>20}: ack p50 {p['ack_p50_ms']:.2f} ms"
                    f" p99 {p['ack_p99_ms']:.2f} ms, {p['out_per_s']:.0f} msg/s out,"
                    f" reply p99 {p['reply_p99_ms']:.0f} ms, {p['answered_once']}/"
                    f"{p['webhooks']} once, {p['errors']} errors"
                )
    finally:
        for process, _, _ in bench.servers.values():
            process.stop()
        if bench.fake is not None:
            bench.fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results = summarize(phases)
    valid = all(p["errors"] == 0 and p["duplicates"] == 0 and p["missing"] == 0 for p in phases)
    return {
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "rate": args.rate,
            "bots": args.bots,
            "chats": args.chats,
            "connections": args.connections,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "results": results,
        "phases": phases,
        "valid": valid,
    }


def _has_tornado() -> bool:
    try:
        import tornado  # noqa: F401
    except ImportError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_webhooks", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s at 200/s")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.add_argument("--rounds", type=int, help="rounds of gateway/baseline phases (default 3)")
    p.add_argument("--seconds", type=float, help="length of each measured phase (default 10)")
    p.add_argument("--rate", type=float, help="offered webhooks/s (default 500)")
    p.add_argument("--bots", type=int, help="gateway bots, one token each (default rate/25)")
    p.add_argument("--chats", type=int, help="chats per server (default 2 x rate)")
    p.add_argument("--connections", type=int, default=64, help="load generator's connection cap")
    p.add_argument("--no-ptb", action="store_true", help="measure the gateway only")
    p.add_argument("--start-timeout", type=float, default=90.0, help="seconds to wait for ready")
    p.add_argument("--botserver", type=Path, default=BOTSERVER, help="the botserver executable")
    p.add_argument("--loadgen", metavar="SPEC", help=argparse.SUPPRESS)
    p.add_argument("--fake", metavar="SPEC", help=argparse.SUPPRESS)
    p.add_argument("--ptb", metavar="SPEC", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.loadgen:
        return _loadgen_main(json.loads(args.loadgen))
    if args.fake:
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
        asyncio.run(_fake_main(json.loads(args.fake)))
        return 0
    if args.ptb:
        return _ptb_main(json.loads(args.ptb))
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.seconds = args.seconds or (2.0 if quick else 10.0)
    args.rate = args.rate or (200.0 if quick else 500.0)
    # Telegram allows a bot ~30 messages/s, and the gateway paces each bot under it: the
    # load is spread over enough bots to leave each at 25/s.
    args.bots = args.bots or max(1, round(args.rate / 25))
    args.chats = args.chats or max(10, int(2 * args.rate))
    # SIGTERM unwinds like Ctrl-C, so the servers and the data directory go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = run(args)
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; servers stopped, temporary data removed", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0 if report["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
