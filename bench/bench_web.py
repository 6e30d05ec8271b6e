"""Web channel benchmark: the gateway against a bare aiohttp handler, in one run.

    python -m bench.bench_web            # full run, ~2-3 minutes
    python -m bench.bench_web --quick    # smoke run, under ~30 s
    python -m bench.bench_web --json     # the same figures as one JSON document

Starts the real gateway (``botserver serve`` on its embedded defaults: its own
PostgreSQL under a fresh data directory, in-process locks) and the baseline
(:mod:`bench.baseline_server`), each in its own process, and drives both with
the same load generator, run in separate processes. Every request is a real
dialog turn of the bundled default bot: distinct users each send "hi", then
"ada lovelace" (the name asked by ``HEAR name AS NAME``), then "help" (the
menu), one message only after the answer to the previous one; a user who has
finished is replaced by a new one.

Measured, alternating gateway and baseline over several rounds (medians):

* throughput: closed loop at 32, 64, 128 and 256 keep-alive connections,
  turns per second; a server's best is its capacity, and the ratio of the two
  capacities is the benchmark's ratio (the ratio at each count is printed too);
* latency at a fixed offered rate: open loop, each request sent on its
  schedule whatever the responses, latency counted from the scheduled send
  time (no coordinated omission): p50 and p99;
* the gateway's RSS idle after ``/ready`` and after 10,000 sessions, with the
  embedded PostgreSQL's processes reported separately.

See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
BOTSERVER = Path(sys.executable).parent / "botserver"
PATH = "/api/v1/bots/default/messages"
DIALOG = ("hi", "ada lovelace", "help")
HOST = "127.0.0.1"
# The web API needs a credential; the admin token lets a caller name the user in the
# body, as the bench's users do. A fresh one per run, given to both servers (the bare
# handler ignores it) and sent on every request.
TOKEN = secrets.token_urlsafe(32)
TICKS = os.sysconf("SC_CLK_TCK")
# Closed-loop throughput is measured at each of these; a server's best is its
# capacity. 256 is the gateway's own limit of concurrent turns (Dispatcher).
CONNECTIONS = [32, 64, 128, 256]


# --------------------------------------------------------------------------- #
# Load generator (runs in its own process: ``python -m bench.bench_web --loadgen SPEC``)
# --------------------------------------------------------------------------- #


@dataclass(slots=True)
class _User:
    uid: str
    stage: int = 0
    session_id: str | None = None


class _Users:
    """Users in dialog; a user is handed out again only once its last turn was answered.

    With ``pool`` (a number of users), the users are that many, each request from a random
    one of those not waiting for an answer, each sending the messages over and over (the
    load ``bench_web_wrk`` gives wrk, with each request's user drawn at random).
    """

    def __init__(self, prefix: str, messages: Sequence[str], pool: int = 0) -> None:
        self.prefix = prefix
        self.messages = list(messages)
        self.pool = pool
        self.minted = 0
        self.sessions = 0  # users whose first message was answered: sessions created
        self.dialogs = 0  # users who sent every message and got every answer
        self.ready: deque[_User] = deque()
        self.idle = [_User(f"{prefix}-{i}") for i in range(1, pool + 1)]
        self.rng = random.Random(prefix)

    def take(self) -> _User:
        if self.pool:
            at = self.rng.randrange(len(self.idle))
            self.idle[at], self.idle[-1] = self.idle[-1], self.idle[at]
            return self.idle.pop()
        if self.ready:
            return self.ready.popleft()
        self.minted += 1
        return _User(f"{self.prefix}-{self.minted}")

    def answered(self, user: _User, session_id: str | None) -> None:
        if user.session_id is None:
            self.sessions += 1
        user.session_id = session_id
        user.stage += 1
        if self.pool:
            user.stage %= len(self.messages)
            self.idle.append(user)
        elif user.stage < len(self.messages):
            self.ready.append(user)
        else:
            self.dialogs += 1

    def body(self, user: _User) -> bytes:
        text = self.messages[user.stage]
        if self.pool:  # as wrk sends them: the gateway finds the user's session
            return orjson.dumps({"user_id": user.uid, "text": text})
        return orjson.dumps({"user_id": user.uid, "text": text, "session_id": user.session_id})


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time.

    A hand-written client rather than aiohttp's: the load generator shares the
    machine's cores with the servers, and this costs a fraction of the CPU per
    request, which leaves more of the machine to the server being measured.
    """

    def __init__(self, gen: _LoadGenerator) -> None:
        self.gen = gen
        self.transport: Any = None
        self.buffer = bytearray()
        self.user: _User | None = None
        self.scheduled = 0.0
        self.sent = 0.0
        self.closed = False

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, user: _User, scheduled: float) -> None:
        assert self.transport is not None
        body = self.gen.users.body(user)
        self.user = user
        self.scheduled = scheduled
        self.transport.write(self.gen.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.sent = time.perf_counter()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.gen.failed(self, "response without content-length")
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end > 0 else None])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        self.gen.completed(self, status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gen.lost(self, exc)


class _LoadGenerator:
    """Closed- or open-loop load of dialog turns against one server."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.users = _Users(spec["user_prefix"], spec["messages"], spec.get("users") or 0)
        # The credential every request brings (the web API needs one; an app's or an admin's,
        # since the body names the user).
        auth = spec.get("authorization")
        auth_line = f"Authorization: Bearer {auth}\r\n" if auth else ""
        self.head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth_line}"
            "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: "
        ).encode()
        self.latencies: list[float] = []
        self.send_lags: list[float] = []
        self.service: list[float] = []  # from the actual send, for comparison
        self.errors = 0
        self.error_samples: list[str] = []
        self.issued = 0
        self.in_flight = 0
        self.idle: list[_Connection] = []
        self.connections = 0
        self.pending: deque[float] = deque()  # open loop: scheduled times waiting for a connection
        self.accepting = True  # closed loop: issue a next request on completion
        self.max_requests: int | None = spec.get("max_requests")
        self.deadline = 0.0
        self.drained: asyncio.Event | None = None

    # -- bookkeeping ------------------------------------------------------- #

    def _error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)

    def completed(self, conn: _Connection, status: int, body: bytes) -> None:
        now = time.perf_counter()
        user, conn.user = conn.user, None
        assert user is not None
        self.in_flight -= 1
        if status == 200:
            self.latencies.append(now - conn.scheduled)
            self.service.append(now - conn.sent)
            try:
                session_id = orjson.loads(body)["session_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self._error(f"200 with a body without session_id: {body[:200]!r}")
            else:
                self.users.answered(user, session_id)
        else:
            self._error(f"HTTP {status}: {body[:200]!r}")
        self._next(conn)

    def failed(self, conn: _Connection, what: str) -> None:
        self._error(what)
        if conn.transport is not None:
            conn.transport.close()

    def lost(self, conn: _Connection, exc: Exception | None) -> None:
        self.connections -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.user is not None:
            conn.user = None
            self.in_flight -= 1
            self._error(f"connection lost mid-request: {exc!r}")
        if self.accepting:
            asyncio.get_running_loop().create_task(self._connect())
        self._check_drained()

    def _next(self, conn: _Connection) -> None:
        if conn.closed:
            return
        if self.spec["mode"] == "closed":
            if self.accepting and self._may_issue(time.perf_counter()):
                self._issue(conn, time.perf_counter())
                return
        elif self.pending:
            self._issue(conn, self.pending.popleft())
            return
        self.idle.append(conn)
        self._check_drained()

    def _may_issue(self, now: float) -> bool:
        if now >= self.deadline:
            return False
        return self.max_requests is None or self.issued < self.max_requests

    def _issue(self, conn: _Connection, scheduled: float) -> None:
        self.issued += 1
        self.in_flight += 1
        user = self.users.take()
        conn.send(user, scheduled)
        self.send_lags.append(time.perf_counter() - scheduled)

    def _check_drained(self) -> None:
        if self.drained is not None and self.in_flight == 0 and not self.pending:
            self.drained.set()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.connections += 1
        try:
            _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError as e:
            self.connections -= 1
            self._error(f"connect failed: {e!r}")
            await asyncio.sleep(0.05)
            return
        self._next(conn)

    # -- drivers ----------------------------------------------------------- #

    async def run(self) -> dict[str, Any]:
        # Start together with the other load generator processes of this phase.
        await asyncio.sleep(max(0.0, self.spec["start_at"] - time.time()))
        watched = _cpu_ticks(self.spec["watch"])
        machine = _machine_ticks()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if self.spec["mode"] == "closed":
            await self._closed_loop(t0)
        else:
            await self._open_loop(t0)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        watched_after = _cpu_ticks(self.spec["watch"])
        machine_after = _machine_ticks()
        return {
            "issued": self.issued,
            "completed": len(self.latencies),
            "errors": self.errors,
            "error_samples": self.error_samples,
            "elapsed": elapsed,
            "window": self.spec["duration"],
            "latencies": [round(x, 7) for x in self.latencies],
            "send_lags": [round(x, 7) for x in self.send_lags],
            "service": [round(x, 7) for x in self.service],
            "sessions": self.users.sessions,
            "dialogs": self.users.dialogs,
            "client_cpu": cpu,
            "watched_cpu": {k: (watched_after[k] - watched[k]) / TICKS for k in self.spec["watch"]},
            "machine": {k: machine_after[k] - machine[k] for k in machine},
        }

    async def _closed_loop(self, t0: float) -> None:
        self.deadline = t0 + self.spec["duration"]
        if not self.users.pool:
            for _ in range(2 * self.spec["connections"]):  # a few users in dialog per connection
                self.users.ready.append(self.users.take())
        await asyncio.gather(*(self._connect() for _ in range(self.spec["connections"])))
        self.drained = asyncio.Event()
        timeout = self.deadline - time.perf_counter() + self.spec["drain_timeout"]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.1)):
                while not (self.in_flight == 0 and not self._may_issue(time.perf_counter())):
                    self.drained.clear()
                    await self.drained.wait()
        self._finish()

    async def _open_loop(self, t0: float) -> None:
        rate = self.spec["rate"]
        n = int(rate * self.spec["duration"])
        max_connections = self.spec["connections"]
        # Warm connections so the first scheduled sends do not pay for a handshake.
        await asyncio.gather(*(self._connect() for _ in range(min(16, max_connections))))
        start = time.perf_counter() + 0.005
        i = 0
        while i < n:
            now = time.perf_counter()
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
                now = time.perf_counter()
            while i < n and start + i / rate <= now:
                scheduled = start + i / rate
                i += 1
                if self.idle:
                    self._issue(self.idle.pop(), scheduled)
                else:
                    self.pending.append(scheduled)
                    if self.connections < max_connections:
                        asyncio.get_running_loop().create_task(self._connect())
        self.drained = asyncio.Event()
        self._check_drained()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec["drain_timeout"]):
                await self.drained.wait()
        self._finish()

    def _finish(self) -> None:
        self.accepting = False
        unanswered = self.in_flight + len(self.pending)
        if unanswered:
            self.errors += unanswered
            self.error_samples.append(f"{unanswered} requests unanswered at the end of the phase")
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()


def _loadgen_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_LoadGenerator(spec).run())
    # A file, not stdout: the parent waits for several generators at once.
    Path(spec["result_path"]).write_bytes(orjson.dumps(result))
    return 0


# --------------------------------------------------------------------------- #
# /proc readings
# --------------------------------------------------------------------------- #


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    return text[text.rfind(")") + 2 :].split()  # fields from 3 (state) on


def _cpu_ticks(groups: dict[str, list[int]]) -> dict[str, int]:
    """User plus system clock ticks of each group of processes."""
    ticks: dict[str, int] = {}
    for name, pids in groups.items():
        total = 0
        for pid in pids:
            fields = _stat_fields(pid)
            if fields is not None:
                total += int(fields[11]) + int(fields[12])  # utime, stime
        ticks[name] = total
    return ticks


def _machine_ticks() -> dict[str, int]:
    """Machine-wide CPU ticks from /proc/stat: busy, idle, steal."""
    text = _read("/proc/stat") or ""
    values = [int(v) for v in text.splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return {
        "busy": user + nice + system + irq + softirq,
        "idle": idle + iowait,
        "steal": steal,
    }


def _status_kb(pid: int, key: str) -> int | None:
    text = _read(f"/proc/{pid}/status")
    for line in (text or "").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def _pss_kb(pid: int) -> int | None:
    text = _read(f"/proc/{pid}/smaps_rollup")
    for line in (text or "").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def _all_pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster running on ``pgdata`` and all its processes.

    pg_ctl daemonizes the postmaster, so it is not a child of the gateway: it
    is found by its ``-D <pgdata>`` argument, its processes by parent pid.
    """
    target = str(pgdata)
    postmaster = None
    for pid in _all_pids():
        cmdline = _read(f"/proc/{pid}/cmdline")
        if not cmdline:
            continue
        argv = cmdline.rstrip("\0").split("\0")
        if Path(argv[0]).name in ("postgres", "postmaster") and any(
            a == "-D" and i + 1 < len(argv) and argv[i + 1].rstrip("/") == target
            for i, a in enumerate(argv)
        ):
            postmaster = pid
            break
    if postmaster is None:
        return []
    pids = [postmaster]
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and int(fields[1]) == postmaster:
            pids.append(pid)
    return pids


@dataclass(frozen=True, slots=True)
class Memory:
    """Resident memory of a server process and, for the gateway, its PostgreSQL."""

    rss_mb: float
    postgres_processes: int = 0
    postgres_rss_mb: float = 0.0
    postgres_pss_mb: float = 0.0

    @classmethod
    def read(cls, pid: int, pg: list[int]) -> Memory:
        rss = [_status_kb(p, "VmRSS") or 0 for p in pg]
        pss = [_pss_kb(p) or 0 for p in pg]
        return cls(
            rss_mb=(_status_kb(pid, "VmRSS") or 0) / 1024,
            postgres_processes=len(pg),
            postgres_rss_mb=sum(rss) / 1024,
            postgres_pss_mb=sum(pss) / 1024,
        )


# --------------------------------------------------------------------------- #
# Servers under test
# --------------------------------------------------------------------------- #


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server under test in its own process (and session), stopped for sure on exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log
        self.port = int(argv[argv.index("--port") + 1])
        self.process: subprocess.Popen[bytes] | None = None
        self.pgdata: Path | None = None

    def start(self, timeout: float) -> float:
        """Start and wait for ``GET /ready`` == 200; returns the seconds it took."""
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop it in order
            )
        while True:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.process.returncode} before ready;"
                    f" log tail:\n{self.log_tail()}"
                )
            if _get_status(self.port, "/ready") == 200:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise BenchError(
                    f"{self.name} not ready after {timeout:.0f} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pg_pids(self) -> list[int]:
        return postgres_pids(self.pgdata) if self.pgdata is not None else []

    def memory(self) -> Memory:
        return Memory.read(self.pid, self.pg_pids())

    def log_tail(self, lines: int = 25) -> str:
        text = _read(str(self.log_path)) or ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (the gateway then stops its PostgreSQL), SIGKILL if it hangs."""
        pg = self.pg_pids()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Backstop: a postmaster the gateway did not stop (it was killed, say).
        if pg and _stat_fields(pg[0]) is not None:
            _signal(pg[0], signal.SIGINT)  # PostgreSQL's fast shutdown
            deadline = time.monotonic() + 10
            while _stat_fields(pg[0]) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if _stat_fields(pg[0]) is not None:
                for pid in pg:
                    _signal(pid, signal.SIGKILL)


def gateway_server(
    botserver: Path, tmp: Path, env: dict[str, str], *, bots: Path | None = None
) -> Server:
    """``botserver serve`` on a free port, its data (and embedded PostgreSQL) in ``tmp/data``,
    its log in ``tmp/gateway.log``; ``bots``: another bots folder than the bundled one."""
    argv = [str(botserver), "serve", "--host", HOST, "--port", str(_free_port())]
    argv += ["--data-dir", str(tmp / "data")]
    if bots is not None:
        argv += ["--bots", str(bots)]
    gateway = Server("gateway", argv, env, tmp / "gateway.log")
    gateway.pgdata = (tmp / "data" / "postgres").resolve()
    return gateway


def baseline_server(tmp: Path) -> Server:
    """The bare aiohttp handler (``bench/baseline_server.py``) on a free port."""
    argv = [sys.executable, "-m", "bench.baseline_server", "--host", HOST]
    argv += ["--port", str(_free_port())]
    return Server("baseline", argv, _server_env(), tmp / "baseline.log")


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _get_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _post(port: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        conn.request("POST", PATH, orjson.dumps(payload), headers)
        response = conn.getresponse()
        body = response.read()
        try:
            return response.status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return response.status, {"body": body[:200].decode(errors="replace")}
    finally:
        conn.close()


def smoke_dialog(server: Server) -> list[str]:
    """One scripted conversation, to show that each request is a real dialog turn."""
    lines = []
    session_id = None
    for text in DIALOG:
        status, data = _post(
            server.port, {"user_id": "bench-smoke", "text": text, "session_id": session_id}
        )
        if status != 200:
            raise BenchError(f"{server.name}: {text!r} answered HTTP {status}: {data}")
        session_id = data["session_id"]
        replies = " / ".join(r["text"].replace("\n", " ") for r in data["replies"])
        lines.append(f"> {text}\n    < {replies[:110]}")
    return lines


class BenchError(Exception):
    """The benchmark could not run (a server did not start, a check failed)."""


# --------------------------------------------------------------------------- #
# Phases
# --------------------------------------------------------------------------- #


@dataclass(slots=True)
class Phase:
    """The merged result of one load phase over all load generator processes."""

    server: str
    kind: str
    results: list[dict[str, Any]]
    connections: int = 0  # closed loop: the number of connections (users in flight)
    latencies: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.latencies = sorted(x for r in self.results for x in r["latencies"])

    def total(self, key: str) -> int:
        return sum(int(r[key]) for r in self.results)

    @property
    def window(self) -> float:
        # The slowest generator's elapsed time: the measurement window, drain included.
        return float(max(r["elapsed"] for r in self.results))

    @property
    def rate(self) -> float:
        return self.total("completed") / self.window

    def percentile(self, q: float, values: list[float] | None = None) -> float:
        data = self.latencies if values is None else values
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(q / 100 * len(data)) - 1))] * 1000

    @property
    def send_lag_p99(self) -> float:
        return self.percentile(99, sorted(x for r in self.results for x in r["send_lags"]))

    @property
    def service_p99(self) -> float:
        return self.percentile(99, sorted(x for r in self.results for x in r["service"]))

    def cpu(self, name: str) -> float:
        """CPU seconds a watched process group used during the window (first generator)."""
        return float(self.results[0]["watched_cpu"].get(name, 0.0))

    @property
    def client_cpu(self) -> float:
        return sum(float(r["client_cpu"]) for r in self.results)

    @property
    def machine_busy(self) -> float:
        m = self.results[0]["machine"]
        total = m["busy"] + m["idle"] + m["steal"]
        return m["busy"] / total if total else 0.0

    @property
    def machine_steal(self) -> float:
        m = self.results[0]["machine"]
        total = m["busy"] + m["idle"] + m["steal"]
        return m["steal"] / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        completed = self.total("completed")
        return {
            "server": self.server,
            "kind": self.kind,
            "connections": self.connections,
            "completed": completed,
            "errors": self.total("errors"),
            "error_samples": [s for r in self.results for s in r["error_samples"]][:5],
            "window_s": round(self.window, 3),
            "rate": round(self.rate, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "max_ms": round(self.latencies[-1] * 1000, 3) if self.latencies else None,
            "send_lag_p99_ms": round(self.send_lag_p99, 3),
            "from_send_p99_ms": round(self.service_p99, 3),
            "sessions": self.total("sessions"),
            "cpu_s": {
                "server": round(self.cpu("server"), 2),
                "postgres": round(self.cpu("postgres"), 2),
                "client": round(self.client_cpu, 2),
            },
            "cpu_us_per_turn": {
                k: round(v / completed * 1e6) if completed else None
                for k, v in (
                    ("server", self.cpu("server")),
                    ("postgres", self.cpu("postgres")),
                    ("client", self.client_cpu),
                )
            },
            "machine_busy": round(self.machine_busy, 3),
            "machine_steal": round(self.machine_steal, 3),
        }


class Bench:
    """Runs the phases; user ids never repeat, so every phase starts fresh dialogs."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.run_id = f"{os.getpid()}-{int(time.time())}"
        self.phase_count = 0
        self.loadgens: list[subprocess.Popen[bytes]] = []

    def phase(
        self,
        server: Server,
        kind: str,
        *,
        mode: str,
        duration: float,
        connections: int,
        rate: float = 0.0,
        messages: Sequence[str] = DIALOG,
        max_requests: int | None = None,
        authorization: str | None = None,
        users: int = 0,
        user_prefix: str | None = None,
    ) -> Phase:
        """One load phase; ``users``: that many users, drawn at random (see ``_Users``), named
        ``user_prefix``-N (each generator its own share) to meet the same users again."""
        self.phase_count += 1
        clients = self.args.clients
        pg = server.pg_pids()
        start_at = time.time() + 0.6  # interpreter start-up of the generators
        specs = [
            {
                "host": HOST,
                "port": server.port,
                "mode": mode,
                "duration": duration,
                "connections": max(1, connections // clients),
                "rate": rate / clients,
                "messages": list(messages),
                "max_requests": None if max_requests is None else -(-max_requests // clients),
                "user_prefix": f"{user_prefix}-c{i}"
                if user_prefix
                else f"b{self.run_id}-{self.phase_count}-{kind}-c{i}",
                "users": -(-users // clients),
                "start_at": start_at,
                "drain_timeout": 10.0,
                "watch": {"server": [server.pid], "postgres": pg},
                # The admin token unless the caller names another credential (bench_auth).
                "authorization": authorization or TOKEN,
            }
            for i in range(clients)
        ]
        for i, spec in enumerate(specs):
            spec["result_path"] = str(self.tmp / f"loadgen-{self.phase_count}-{i}.json")
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.bench_web", "--loadgen", json.dumps(spec)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # on Ctrl-C we stop them, without their tracebacks
            )
            for spec in specs
        ]
        self.loadgens = procs
        results = []
        try:
            for proc, spec in zip(procs, specs, strict=True):
                proc.wait(timeout=duration + 60)
                if proc.returncode != 0:
                    raise BenchError(f"load generator exited with {proc.returncode}")
                results.append(orjson.loads(Path(spec["result_path"]).read_bytes()))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            self.loadgens = []
        return Phase(server.name, kind, results, connections if mode == "closed" else 0)


# --------------------------------------------------------------------------- #
# Orchestration and report
# --------------------------------------------------------------------------- #


def _cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _nproc() -> int:
    try:
        return int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        return len(os.sched_getaffinity(0))


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.pop("BOTSERVER_DATA_DIR", None)
    env.pop("BOTSERVER_PORT", None)
    env.pop("BOTSERVER_HOST", None)
    env["BOTSERVER_ADMIN_TOKEN"] = TOKEN
    # The load comes from one address with one credential: the rate limits (50/s by
    # default) would measure themselves, not the gateway.
    env["BOTSERVER_RATE_LIMITS"] = "off"
    # The bundled bot's knowledge base is indexed once, on a first start: with the local
    # model that is minutes of embedding on the other core, which a fresh data folder
    # repeats on every run. The web path is measured without it (BOTSERVER_KB_INGEST=on
    # in the environment measures it with).
    env.setdefault("BOTSERVER_KB_INGEST", "off")
    return env


def run(args: argparse.Namespace, out: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, "-m", "bench.bench_web", *sys.argv[1:]]),
        "cwd": str(ROOT),
        "machine": {
            "nproc": _nproc(),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_at_start": (_read("/proc/loadavg") or "").split()[:3],
        },
        "settings": {
            "rounds": args.rounds,
            "phase_seconds": args.seconds,
            "connections": args.connections,
            "rate": args.rate,
            "sessions_target": args.sessions,
            "clients": args.clients,
        },
    }

    def say(line: str = "") -> None:
        out.append(line)
        if not args.json:
            print(line, flush=True)

    m = report["machine"]
    say("botserver web benchmark")
    say(f"command : {report['command']}   (in {ROOT})")
    say(f"machine : nproc={m['nproc']}, {m['cpu_model']}, Linux {m['kernel']},")
    say(f"          Python {m['python']}, load average at start {' '.join(m['loadavg_at_start'])}")
    say(
        f"load    : {args.clients} load generator process(es); throughput = closed loop at"
        f" {', '.join(map(str, args.connections))} keep-alive connections x {args.seconds:g} s;"
    )
    say(
        f"          latency = open loop at {args.rate:g} req/s x {args.seconds:g} s;"
        f" {args.rounds} round(s), gateway and baseline alternating; medians"
    )
    say(f"dialog  : every request a turn: users send {', '.join(map(repr, DIALOG))} in order")
    say()

    tmp = Path(tempfile.mkdtemp(prefix="botserver-bench-"))
    servers: list[Server] = []
    bench = Bench(args, tmp)
    try:
        gateway = gateway_server(args.botserver, tmp, _server_env())
        baseline = baseline_server(tmp)
        servers += [gateway, baseline]
        report["gateway_argv"] = gateway.argv
        ready_s = gateway.start(timeout=args.start_timeout)
        idle = gateway.memory()
        say(
            f"gateway ready in {ready_s:.1f} s (pid {gateway.pid},"
            f" postgres pids {gateway.pg_pids()})"
        )
        baseline.start(timeout=30)
        base_idle = baseline.memory()
        report["gateway_ready_s"] = round(ready_s, 2)
        for server in (gateway, baseline):
            say(f"{server.name} smoke dialog:")
            for line in smoke_dialog(server):
                say("  " + line)
        say()

        # Warm-up: connections, prepared statements, caches; not recorded.
        for server in (gateway, baseline):
            bench.phase(
                server,
                "warmup",
                mode="closed",
                duration=args.warmup,
                connections=max(args.connections),
            )

        phases: list[Phase] = []
        gateway_sessions = 0
        for r in range(args.rounds):
            order = (gateway, baseline) if r % 2 == 0 else (baseline, gateway)
            levels = args.connections if r % 2 == 0 else args.connections[::-1]
            runs = [("throughput", n, server) for n in levels for server in order]
            runs += [("latency", args.max_connections, server) for server in order]
            for kind, connections, server in runs:
                if kind == "throughput":
                    p = bench.phase(
                        server, kind, mode="closed", duration=args.seconds, connections=connections
                    )
                    label = f"{kind} x{connections}"
                else:
                    p = bench.phase(
                        server,
                        kind,
                        mode="open",
                        duration=args.seconds,
                        connections=connections,
                        rate=args.rate,
                    )
                    label = f"{kind} {args.rate:g}/s"
                phases.append(p)
                if server is gateway:
                    gateway_sessions += p.total("sessions")
                s = p.summary()
                say(
                    f"round {r + 1} {label:16} {server.name:8} {s['rate']:7.0f} turns/s"
                    f"  p50 {s['p50_ms']:6.2f} ms  p99 {s['p99_ms']:6.2f} ms"
                    f"  errors {s['errors']}  cpu server/pg/client"
                    f" {s['cpu_s']['server']:.1f}/{s['cpu_s']['postgres']:.1f}"
                    f"/{s['cpu_s']['client']:.1f} s  busy {s['machine_busy']:.0%}"
                )
        after_rounds = gateway.memory()

        # Sessions: top up to the target with users who only say "hi", then read RSS.
        warm_sessions = gateway_sessions
        missing = max(0, args.sessions - gateway_sessions)
        burst = None
        if missing:
            burst = bench.phase(
                gateway,
                "sessions",
                mode="closed",
                duration=args.sessions_timeout,
                connections=min(args.connections),
                messages=("hi",),
                max_requests=missing,
            )
            gateway_sessions += burst.total("sessions")
            say(
                f"sessions burst: {burst.total('sessions')} new users said 'hi' in"
                f" {burst.window:.1f} s ({burst.rate:.0f}/s), errors {burst.total('errors')}"
            )
        time.sleep(1.0)
        loaded = gateway.memory()
        base_loaded = baseline.memory()
        say()

        report["phases"] = [p.summary() for p in phases]
        if burst is not None:
            report["sessions_burst"] = burst.summary()
        errors = sum(p.total("errors") for p in phases) + (burst.total("errors") if burst else 0)
        report["errors"] = errors
        report["results"] = _medians(phases)
        report["memory"] = {
            "gateway_idle": _mem(idle),
            "gateway_after_rounds": _mem(after_rounds),
            "gateway_after_sessions": _mem(loaded),
            "sessions_created": gateway_sessions,
            "sessions_created_in_rounds": warm_sessions,
            "baseline_idle": _mem(base_idle),
            "baseline_after": _mem(base_loaded),
        }
        _print_summary(report, say)
        for p in phases + ([burst] if burst else []):
            for sample in p.summary()["error_samples"]:
                say(f"  error sample ({p.server} {p.kind}): {sample}")
        return report
    finally:
        for proc in bench.loadgens:
            if proc.poll() is None:
                proc.kill()
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _mem(m: Memory) -> dict[str, float]:
    return {
        "server_rss_mb": round(m.rss_mb, 1),
        "postgres_processes": m.postgres_processes,
        "postgres_rss_sum_mb": round(m.postgres_rss_mb, 1),
        "postgres_pss_sum_mb": round(m.postgres_pss_mb, 1),
    }


SERVERS = ("gateway", "baseline")


def _medians(phases: list[Phase]) -> dict[str, Any]:
    """Medians over rounds: throughput at each connection count, capacities, open-loop latency.

    A server's capacity is its best median throughput over the connection
    counts measured; the ratio of the two capacities is the benchmark's ratio.
    """

    def med(selected: list[Phase], key: str) -> float:
        return round(float(statistics.median(p.summary()[key] for p in selected)), 3)

    def med_cpu(selected: list[Phase], part: str) -> float | None:
        values = [p.summary()["cpu_us_per_turn"][part] for p in selected]
        values = [v for v in values if v is not None]
        return round(statistics.median(values)) if values else None

    levels = sorted({p.connections for p in phases if p.kind == "throughput"})
    throughput: list[dict[str, Any]] = []
    for n in levels:
        entry: dict[str, Any] = {"connections": n}
        for server in SERVERS:
            selected = [
                p
                for p in phases
                if p.server == server and p.kind == "throughput" and p.connections == n
            ]
            entry[server] = {
                "turns_per_s": med(selected, "rate"),
                "p50_ms": med(selected, "p50_ms"),
                "p99_ms": med(selected, "p99_ms"),
                "machine_busy": med(selected, "machine_busy"),
                "machine_steal": med(selected, "machine_steal"),
                "cpu_us_per_turn": {
                    part: med_cpu(selected, part) for part in ("server", "postgres", "client")
                },
                "client_cpu_s": round(statistics.median(p.client_cpu for p in selected), 2),
            }
        entry["ratio"] = round(
            entry["gateway"]["turns_per_s"] / entry["baseline"]["turns_per_s"], 3
        )
        throughput.append(entry)

    capacity: dict[str, Any] = {}
    for server in SERVERS:
        best = max(throughput, key=lambda e: e[server]["turns_per_s"])
        capacity[server] = {
            "turns_per_s": best[server]["turns_per_s"],
            "connections": best["connections"],
        }
    capacity["ratio"] = round(
        capacity["gateway"]["turns_per_s"] / capacity["baseline"]["turns_per_s"], 3
    )

    res: dict[str, Any] = {"throughput": throughput, "capacity": capacity}
    for server in SERVERS:
        selected = [p for p in phases if p.server == server and p.kind == "latency"]
        res[server] = {
            "latency_rate": med(selected, "rate"),
            "latency_p50_ms": med(selected, "p50_ms"),
            "latency_p99_ms": med(selected, "p99_ms"),
            "latency_send_lag_p99_ms": med(selected, "send_lag_p99_ms"),
            "latency_from_send_p99_ms": med(selected, "from_send_p99_ms"),
        }
    res["ratio"] = capacity["ratio"]
    return res


def _print_summary(report: dict[str, Any], say: Any) -> None:
    r = report["results"]
    g, b = r["gateway"], r["baseline"]
    cap = r["capacity"]
    seconds = report["settings"]["phase_seconds"]
    rate = report["settings"]["rate"]
    say("=" * 78)
    title = f"median of {report['settings']['rounds']} round(s)"
    say(f"{title:34}{'gateway':>22}{'baseline':>22}")
    say(f"{'throughput, full turns/s (p99 ms)':34}{'':44}   ratio")
    for e in r["throughput"]:
        cells = "".join(
            f"{e[s]['turns_per_s']:13.0f} ({e[s]['p99_ms']:5.1f})"
            + ("*" if cap[s]["connections"] == e["connections"] else " ")
            for s in SERVERS
        )
        level = f"  {e['connections']} connections"
        say(f"{level:34}{cells}{e['ratio']:8.3f}")
    say(f"{'  (* each server at its best: its capacity)':34}")
    say(
        f"{'RATIO of capacities gateway/baseline':42}{cap['ratio']:12.3f}"
        f"   target >= 0.4: {'PASS' if cap['ratio'] >= 0.4 else 'FAIL'}"
    )
    ratios = [e["ratio"] for e in r["throughput"]]
    say(
        f"{'  ratio at equal connections':42}{min(ratios):8.3f} to {max(ratios):.3f}"
        f"  (at {r['throughput'][0]['connections']}: {ratios[0]:.3f})"
    )
    say(
        f"{f'latency at {rate:g} req/s offered, p50 ms':42}"
        f"{g['latency_p50_ms']:12.2f}{b['latency_p50_ms']:12.2f}"
    )
    say(
        f"{f'latency at {rate:g} req/s offered, p99 ms':42}"
        f"{g['latency_p99_ms']:12.2f}{b['latency_p99_ms']:12.2f}"
        f"   target gateway < 10: {'PASS' if g['latency_p99_ms'] < 10 else 'FAIL'}"
    )
    say(f"{'  achieved rate, req/s':42}{g['latency_rate']:12.0f}{b['latency_rate']:12.0f}")
    say(
        f"{'  p99 from the actual send, ms':42}"
        f"{g['latency_from_send_p99_ms']:12.2f}{b['latency_from_send_p99_ms']:12.2f}"
    )
    say(
        f"{'  client send lag p99, ms (client delay)':42}"
        f"{g['latency_send_lag_p99_ms']:12.2f}{b['latency_send_lag_p99_ms']:12.2f}"
    )
    at = {
        s: next(e for e in r["throughput"] if e["connections"] == cap[s]["connections"])
        for s in SERVERS
    }
    gc, bc = at["gateway"]["gateway"], at["baseline"]["baseline"]
    say(
        f"{'CPU per turn at capacity, us: server':42}"
        f"{_us(gc['cpu_us_per_turn']['server']):>12}{_us(bc['cpu_us_per_turn']['server']):>12}"
    )
    say(
        f"{'                              postgres':42}"
        f"{_us(gc['cpu_us_per_turn']['postgres']):>12}{'-':>12}"
    )
    say(
        f"{'                              load generator':42}"
        f"{_us(gc['cpu_us_per_turn']['client']):>12}{_us(bc['cpu_us_per_turn']['client']):>12}"
    )
    say(
        f"{'  load generator CPU, % of one core':42}"
        f"{gc['client_cpu_s'] / seconds:12.0%}{bc['client_cpu_s'] / seconds:12.0%}"
    )
    say(
        f"{'  machine busy / steal at capacity':42}"
        f"{gc['machine_busy']:8.0%}/{gc['machine_steal']:<3.0%}"
        f"{bc['machine_busy']:8.0%}/{bc['machine_steal']:<3.0%}"
    )
    say("-" * 78)
    mem = report["memory"]

    def mline(label: str, m: dict[str, float]) -> None:
        pg = (
            f"   postgres: {m['postgres_processes']} processes, RSS sum"
            f" {m['postgres_rss_sum_mb']:.0f} MB (PSS sum {m['postgres_pss_sum_mb']:.0f} MB)"
            if m["postgres_processes"]
            else ""
        )
        say(f"{label:34}{m['server_rss_mb']:7.1f} MB{pg}")

    say("RSS (VmRSS of the server process)")
    mline("gateway idle, right after ready", mem["gateway_idle"])
    idle_ok = mem["gateway_idle"]["server_rss_mb"] < 150
    say(f"{'':34}target < 150 MB: {'PASS' if idle_ok else 'FAIL'}")
    mline("gateway after the rounds", mem["gateway_after_rounds"])
    mline(f"gateway after {mem['sessions_created']:,} sessions", mem["gateway_after_sessions"])
    mline("baseline idle", mem["baseline_idle"])
    mline("baseline at the end", mem["baseline_after"])
    say("-" * 78)
    if report["errors"]:
        say(
            f"INVALID RUN: {report['errors']} errors (non-200 answers, lost or unanswered requests)"
        )
    else:
        say("errors: 0 (every request answered 200 with a session id)")


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from e
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("connection counts must be positive")
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_web", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s phases")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.add_argument("--rounds", type=int, help="rounds of gateway/baseline phases (default 3)")
    p.add_argument("--seconds", type=float, help="length of each measured phase (default 5)")
    p.add_argument(
        "--connections",
        type=_counts,
        default=CONNECTIONS,
        help="closed-loop connection counts, comma-separated (default %(default)s)",
    )
    p.add_argument("--rate", type=float, default=1000.0, help="open-loop offered rate, req/s")
    p.add_argument("--sessions", type=int, help="sessions before the loaded RSS (default 10000)")
    p.add_argument("--clients", type=int, default=1, help="load generator processes")
    p.add_argument("--max-connections", type=int, default=256, help="open-loop connection cap")
    p.add_argument("--start-timeout", type=float, default=90.0, help="seconds to wait for ready")
    p.add_argument("--botserver", type=Path, default=BOTSERVER, help="the botserver executable")
    p.add_argument("--loadgen", metavar="SPEC", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.loadgen:
        return _loadgen_main(args.loadgen)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.seconds = args.seconds or (1.0 if quick else 5.0)
    args.sessions = args.sessions if args.sessions is not None else (500 if quick else 10_000)
    args.warmup = 0.5 if quick else 2.0
    args.sessions_timeout = 120.0
    # SIGTERM unwinds like Ctrl-C, so the servers and the data directory go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out: list[str] = []
    try:
        report = run(args, out)
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; servers stopped, temporary data removed", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report, indent=2))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
