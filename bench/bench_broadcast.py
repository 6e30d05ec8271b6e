"""A broadcast to the fake Telegram Bot API at its 30 messages/s limit, with a kill -9 halfway.

    .venv/bin/python -m bench.bench_broadcast                  # 10,000 messages, ~6 minutes
    .venv/bin/python -m bench.bench_broadcast --messages 1500  # a shorter run

Runs ``botserver serve`` as a subprocess on a fresh database of the PostgreSQL server
(``--database-url``, default the tests' server) with a bot whose Telegram channel points at
a fake Bot API in this process (``tests/channels/fake_telegram.py``) that enforces a global
flood limit as Telegram does: beyond 30 sendMessage a second (a token bucket, 5 at once) it
answers 429 ``retry_after`` and sends nothing. Then:

1. queues ``--messages`` proactive messages, one per chat, through
   ``POST /api/v1/bots/{bot}/send`` with an ``Idempotency-Key`` each (a request that fails
   while the gateway is down is sent again, with the same key, once it is back);
2. SIGKILLs the gateway once the fake has received half of them, and starts it again
   (its leases, ``BOTSERVER_LEASE``, expire after a few seconds);
3. waits until every message has arrived (or the time is up), then a few seconds more for
   any duplicate, and counts at the fake: each message exactly once, none lost.

Printed: the time from the first message to the last, the achieved rate against the
limit, during the sending before and after the kill and overall (the outage included), the
fake's 429s (the limit met by us rather than by the provider), the busiest second, and the
outbox rows by status: a part on its way when the process died is ``unknown``, never sent
again (the fake says whether it arrived).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.channels.fake_telegram import TOKEN, FakeBotApi

BOT = "herald"
RATE = 30.0
LEASE = 5.0
DEFAULT_DATABASE = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHAT0 = 700_000_000


class Gateway:
    """``botserver serve`` in a subprocess on a fixed port, so that it can be restarted."""

    def __init__(self, env: dict[str, str], port: int, bots: Path, data: Path, log: Path):
        self.env, self.port, self.bots, self.data, self.log = env, port, bots, data, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> float:
        botserver = Path(sys.executable).parent / "botserver"
        t0 = time.monotonic()
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(botserver), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--bots", str(self.bots), "--data-dir", str(self.data),
                stdout=log, stderr=asyncio.subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        while time.monotonic() - t0 < 60:
            if self.process.returncode is not None:
                raise SystemExit(f"the gateway exited; see {self.log}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{self.url}/ready") as resp:
                    if resp.status == 200:
                        return time.monotonic() - t0
            await asyncio.sleep(0.1)
        raise SystemExit(f"the gateway was not ready after 60 s; see {self.log}")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.process = None

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bot(folder: Path, api_url: str) -> None:
    package = folder / f"{BOT}.gbai"
    (package / f"{BOT}.gbdialog").mkdir(parents=True)
    (package / f"{BOT}.gbot").mkdir()
    (package / f"{BOT}.gbdialog" / "start.bas").write_text('TALK "Hello from herald."\n')
    rows = {
        "telegram-bot-token": TOKEN,
        "telegram-webhook-secret": "broadcast_bench_secret-1",
        "telegram-api-url": api_url,
    }
    config = "name,value\n" + "".join(f"{k},{v}\n" for k, v in rows.items())
    (package / f"{BOT}.gbot" / "config.csv").write_text(config)


def text_of(i: int) -> str:
    return f"Broadcast message {i}"


class Queuer:
    """Queues every message through the send API; retries what failed, with its key."""

    def __init__(self, gateway: Gateway, admin: str, messages: int, concurrency: int) -> None:
        self.gateway = gateway
        self.headers = {"Authorization": f"Bearer {admin}"}
        self.todo = list(range(messages))
        self.queued: set[int] = set()
        self.retried = 0
        self.concurrency = concurrency
        self.done = asyncio.Event()
        self.finished_at = 0.0

    async def run(self, http: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(self._worker(http) for _ in range(self.concurrency)))
        self.finished_at = time.monotonic()
        self.done.set()

    async def _worker(self, http: aiohttp.ClientSession) -> None:
        while self.todo:
            i = self.todo.pop()
            while True:
                try:
                    status, retry_after = await self._send(http, i)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    status, retry_after = 0, 0.5  # the gateway is down: again, same key
                if status == 202:
                    self.queued.add(i)
                    break
                self.retried += 1
                await asyncio.sleep(retry_after)

    async def _send(self, http: aiohttp.ClientSession, i: int) -> tuple[int, float]:
        body = {"channel": "telegram", "to": str(CHAT0 + i), "text": text_of(i)}
        headers = {**self.headers, "Idempotency-Key": f"broadcast-{i}"}
        url = f"{self.gateway.url}/api/v1/bots/{BOT}/send"
        async with http.post(url, json=body, headers=headers) as resp:
            await resp.read()
            return resp.status, float(resp.headers.get("Retry-After", "0.5"))


async def _outbox(database: str) -> Counter[str]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT status, count(*) FROM outbox GROUP BY status")
        return Counter({r["status"]: r["count"] for r in rows})
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> int:
    n = args.messages
    tmp = Path(tempfile.mkdtemp(prefix="botserver-bench-broadcast-"))
    name = f"botserver_broadcast_{uuid.uuid4().hex[:10]}"
    admin_conn = await asyncpg.connect(args.database_url)
    await admin_conn.execute(f'CREATE DATABASE "{name}"')
    await admin_conn.close()
    database = f"{args.database_url.rpartition('/')[0]}/{name}"

    fake = FakeBotApi(flood_rate=RATE, flood_burst=5, record_calls=False)
    arrivals: list[float] = []
    original = fake._sendmessage

    half, everything = asyncio.Event(), asyncio.Event()

    async def counted(params: dict[str, Any]) -> Any:
        message = await original(params)  # raises (nothing sent) when over the flood limit
        arrivals.append(time.monotonic())
        if len(arrivals) >= n // 2:
            half.set()
        if len(arrivals) >= n:
            everything.set()
        return message

    fake._sendmessage = counted  # type: ignore[method-assign]
    api_url = await fake.start()
    _bot(tmp / "bots", api_url)
    admin = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSERVER_")}
    env.pop("REDIS_URL", None)
    env.update(
        DATABASE_URL=database,
        BOTSERVER_ADMIN_TOKEN=admin,
        BOTSERVER_LEASE=str(LEASE),
        BOTSERVER_KB_INGEST="off",
        # Queueing is not what is measured: an admin may queue 10,000 in seconds.
        BOTSERVER_RATE_LIMIT_APP="2000/second",
        BOTSERVER_RATE_LIMIT_IP="2000/second",
    )
    gateway = Gateway(env, _free_port(), tmp / "bots", tmp / "data", tmp / "gateway.log")
    timeout = aiohttp.ClientTimeout(total=15)
    print(f"broadcast of {n:,} messages to the fake Bot API at {RATE:g}/s, kill -9 at {n // 2:,}")
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            started = await gateway.start(http)
            print(f"gateway ready in {started:.1f} s (log: {gateway.log})")
            queuer = Queuer(gateway, admin, n, args.concurrency)
            t_queue = time.monotonic()
            queueing = asyncio.create_task(queuer.run(http))
            await half.wait()
            await gateway.kill()
            t_kill = time.monotonic()
            at_kill = len(arrivals)
            print(
                f"killed (SIGKILL) after {at_kill:,} arrived, {len(queuer.queued):,} queued,"
                f" {t_kill - t_queue:.1f} s in"
            )
            restart = await gateway.start(http)
            t_restart = time.monotonic()
            print(f"restarted in {restart:.1f} s")
            # Every message, unless some were lost: then until the time is up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(n / RATE * 1.5 + 4 * LEASE + 60):
                    await everything.wait()
                    await queuer.done.wait()
            await asyncio.sleep(args.settle)  # a duplicate would arrive now
            queueing.cancel()
            statuses = await _outbox(database)
            await gateway.stop()
    finally:
        await gateway.stop()
        await fake.close()
        conn = await asyncpg.connect(args.database_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    received = Counter((chat, m["text"]) for (chat, _), m in fake.messages.items())
    expected = {(CHAT0 + i, text_of(i)) for i in range(n)}
    duplicated = sum(1 for key, count in received.items() if count > 1)
    lost = sorted(expected - set(received))
    strangers = set(received) - expected
    first, last = arrivals[0], arrivals[-1]
    after = [t for t in arrivals[at_kill:] if t >= t_restart]
    seconds = Counter(math.floor(t - first) for t in arrivals)
    before_rate = (at_kill - 1) / (arrivals[at_kill - 1] - first)
    queued_at = queuer.finished_at if queuer.finished_at < t_kill else t_kill
    while_queueing = [t for t in arrivals[:at_kill] if t <= queued_at]
    after_queueing = [t for t in arrivals[:at_kill] if t > queued_at]

    def rate_of(times: list[float]) -> str:
        if len(times) < 2:
            return "-"
        rate = (len(times) - 1) / (times[-1] - times[0])
        return f"{rate:.2f}/s over {times[-1] - times[0]:.0f} s ({rate / RATE:.1%})"

    after_rate = (len(after) - 1) / (after[-1] - after[0]) if len(after) > 1 else float("nan")
    gap = (after[0] if after else last) - t_kill

    print()
    print(f"| broadcast of {n:,} (kill -9 at {at_kill:,}) | |")
    print("|---|---|")
    print(f"| arrived at the fake, distinct | {len(received):,} of {n:,} |")
    print(f"| duplicated | {duplicated} |")
    print(f"| lost | {len(lost)}{' ' + str(lost[:5]) if lost else ''} |")
    print(f"| unexpected | {len(strangers)} |")
    print(f"| first to last message | {last - first:.1f} s |")
    print(
        f"| rate before the kill | {before_rate:.2f}/s ({before_rate / RATE:.1%} of {RATE:g}/s) |"
    )
    print(f"| - while the broadcast was being queued | {rate_of(while_queueing)} |")
    print(f"| - once it was queued, up to the kill | {rate_of(after_queueing)} |")
    print(f"| rate after the restart | {after_rate:.2f}/s ({after_rate / RATE:.1%}) |")
    print(
        f"| rate overall, outage included | {(len(arrivals) - 1) / (last - first):.2f}/s"
        f" (kill to the first send after it: {gap:.1f} s) |"
    )
    print(f"| busiest second | {max(seconds.values())} messages |")
    print(f"| 429s from the fake (over its limit) | {fake.flood_refused} |")
    print(f"| send requests retried by the queuer | {queuer.retried} |")
    print(f"| outbox rows by status | {dict(sorted(statuses.items()))} |")
    ok = not duplicated and not lost and not strangers
    print(f"\n{'every message exactly once' if ok else 'NOT exactly once'}; data in {tmp}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16, help="send requests at once")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait at the end")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    args = parser.parse_args()
    if args.messages < 10:
        parser.error("--messages must be 10 or more")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
