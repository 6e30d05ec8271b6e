"""First-delta benchmark: from the provider's first token to the first delta leaving the gateway.

    python -m bench.bench_first_delta              # 200 web runs, 200 relay runs, 100 Telegram runs
    python -m bench.bench_first_delta --quick      # 30 / 30 / 15, < 1 min
    python -m bench.bench_first_delta --json       # the same figures as one JSON document

This process runs, on one event loop: a fake OpenAI-compatible model server that streams
an answer (its role chunk, a pause, then the first token, whose write time is taken right
before it goes to the socket, then more tokens 5 ms apart), a fake Telegram Bot API
(``tests/channels/fake_telegram.py``) that takes the arrival time of each ``sendMessage``,
and the client. In their own processes: ``botserver serve`` on its embedded defaults (its
own PostgreSQL) with one bot whose model is the fake server and whose Telegram points at
the fake Bot API; and the baseline, a bare aiohttp handler (uvloop, as the gateway runs)
that relays the same model stream through the same ``openai`` SDK as server-sent events,
with nothing else. Runs are one at a time, so each measures a quiet path:

* **web**: ``POST /api/v1/bots/{bot}/messages`` with ``Accept: text/event-stream`` (a
  real turn: inbox, session, history, the model stage): the first ``delta`` event's
  arrival at the client minus the first token's write at the fake model;
* **relay** (baseline): the same through the bare relay: two loopback hops, the SDK's
  parsing and an SSE write, nothing of the gateway's. web minus relay is the gateway's
  own part;
* **telegram**: a webhook update to a fresh chat (the turn runs in the inbox worker): the
  fake Bot API receiving the live ``sendMessage`` minus the first token's write. Each run
  waits for its final edit (a second later: Telegram's edit interval) before the next.

Every time is ``time.monotonic()`` in this process. The target (issue 11): p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.bench_webhooks import BOTSERVER, HOST, BenchError, Process, _free_port

BOT = "stream"
SECRET = "bench_first_delta_secret"
ADMIN_TOKEN = "bench-first-delta-admin-token"
MODEL_KEY = "sk-bench-first-delta"
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
TOKENS = ("Hello ", "there, ", "this ", "is ", "the ", "streamed ", "answer.")
_RUN = re.compile(r"run-(\d+)")


# --------------------------------------------------------------------------- #
# The baseline relay (``--relay PORT MODEL_URL``, its own process)
# --------------------------------------------------------------------------- #


def _relay_main(port: int, model_url: str, api_url: str) -> int:
    from aiohttp import web
    from openai import AsyncOpenAI

    from channels.base import RenderedPart, TextFormat
    from channels.telegram import TelegramChannel

    client = AsyncOpenAI(base_url=model_url, api_key=MODEL_KEY, max_retries=0)
    # The gateway's own Telegram adapter (python-telegram-bot's Bot on httpx).
    telegram = TelegramChannel(token=TOKEN, webhook_secret=SECRET, api_url=api_url)

    async def deltas(text: str) -> Any:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}], stream=True
        )
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    yield choice.delta.content

    async def relay(request: web.Request) -> web.StreamResponse:
        data = orjson.loads(await request.read())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for delta in deltas(data["text"]):
            event = orjson.dumps({"text": delta})
            await response.write(b"event: delta\ndata: " + event + b"\n\n")
        await response.write(b"event: done\ndata: {}\n\n")
        return response

    async def relay_telegram(request: web.Request) -> web.Response:
        # The same stream; its first delta sent to the chat through the same adapter while
        # the rest of the stream is read on, as the gateway does.
        data = orjson.loads(await request.read())
        send: asyncio.Task[Any] | None = None
        async for delta in deltas(data["text"]):
            if send is None:
                part = RenderedPart(delta, TextFormat.PLAIN)
                send = asyncio.create_task(telegram.send(str(data["chat"]), part))
        if send is not None:
            await send
        return web.Response(text="ok")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    app = web.Application()
    app.router.add_post("/relay", relay)
    app.router.add_post("/relay-telegram", relay_telegram)
    app.router.add_get("/ready", ready)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)
    return 0


# --------------------------------------------------------------------------- #
# The fakes and the client (this process)
# --------------------------------------------------------------------------- #


class FakeModel:
    """An OpenAI-compatible streaming server that notes when each run's first token left."""

    def __init__(self, lead: float) -> None:
        self.lead = lead
        self.first_token: dict[int, float] = {}
        self._runner: Any = None
        self.url = ""

    async def start(self) -> str:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.url = f"http://{HOST}:{self._runner.addresses[0][1]}/v1"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        asked = " ".join(str(m.get("content") or "") for m in body["messages"][-1:])
        found = _RUN.search(asked)
        run = int(found.group(1)) if found else -1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1_760_000_000,
                "model": "gpt-4o",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + orjson.dumps(data) + b"\n\n"

        await response.write(chunk({"role": "assistant", "content": ""}))
        await asyncio.sleep(self.lead)  # the gateway waits on the stream, as on a real model
        for index, token in enumerate(TOKENS):
            if index == 0:
                self.first_token[run] = time.monotonic()
            else:
                await asyncio.sleep(0.005)
            await response.write(chunk({"content": token}))
        await response.write(chunk({}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _bot_api() -> Any:
    from tests.channels.fake_telegram import FakeBotApi

    class TimedBotApi(FakeBotApi):
        def __init__(self) -> None:
            super().__init__()
            self.first_send: dict[int, float] = {}
            self.finished: dict[int, asyncio.Event] = {}

        async def _sendmessage(self, params: dict[str, Any]) -> Any:
            self.first_send.setdefault(int(params["chat_id"]), time.monotonic())
            return await super()._sendmessage(params)

        async def _editmessagetext(self, params: dict[str, Any]) -> Any:
            try:
                return await super()._editmessagetext(params)
            finally:
                if params.get("parse_mode") == "HTML":
                    self.finished.setdefault(int(params["chat_id"]), asyncio.Event()).set()

    return TimedBotApi()


async def _first_sse_delta(port: int, path: str, body: dict[str, Any], headers: Any) -> float:
    """POST ``body`` for an event stream; when its first ``delta`` event reached the socket.

    A bare HTTP/1.1 exchange on a socket of its own, timed as the bytes arrive: a client
    library parsing the response head first would add its own time to a server that sends
    its head with the first event (the gateway does) and not to one that sent it before.
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        payload = orjson.dumps(body)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n{head}\r\n"
        )
        writer.write(request.encode() + payload)
        await writer.drain()
        first: float | None = None
        received = b""
        while chunk := await reader.read(65536):
            if first is None:
                received += chunk
                if b"event: delta\n" in received:
                    first = time.monotonic()
        if not received.startswith(b"HTTP/1.1 200"):
            raise BenchError(f"{path}: {received[:300]!r}")
        if first is None:
            raise BenchError(f"{path}: the stream carried no delta: {received[:300]!r}")
        return first
    finally:
        writer.close()


def write_bot(folder: Path, model_url: str, api_url: str) -> None:
    package = folder / f"{BOT}.gbai"
    (package / f"{BOT}.gbdialog").mkdir(parents=True)
    (package / f"{BOT}.gbot").mkdir()
    rows = {
        "llm-url": model_url,
        "llm-key": MODEL_KEY,
        "llm-model": "gpt-4o",
        "telegram-bot-token": TOKEN,
        "telegram-webhook-secret": SECRET,
        "telegram-api-url": api_url,
    }
    lines = "".join(f"{k},{v}\n" for k, v in rows.items())
    (package / f"{BOT}.gbot" / "config.csv").write_text("name,value\n" + lines)


def _ms(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, max(0, round(q / 100 * len(data)) - 1))] * 1000


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in samples.items():
        if values:
            out[name] = {
                "runs": len(values),
                "p50_ms": round(_ms(values, 50), 3),
                "p99_ms": round(_ms(values, 99), 3),
                "max_ms": round(max(values) * 1000, 3),
                "mean_ms": round(statistics.fmean(values) * 1000, 3),
            }
    for ours, base in (("web", "relay"), ("telegram", "telegram_relay")):
        if ours in out and base in out:
            out[f"{ours}_minus_baseline"] = {
                "p50_ms": round(out[ours]["p50_ms"] - out[base]["p50_ms"], 3),
                "p99_ms": round(out[ours]["p99_ms"] - out[base]["p99_ms"], 3),
            }
    return out


async def run_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import aiohttp

    model = FakeModel(args.lead)
    bot_api = _bot_api()
    processes: list[Process] = []
    try:
        model_url = await model.start()
        api_url = await bot_api.start()
        write_bot(tmp / "bots", model_url, api_url)
        gateway_port, relay_port = _free_port(), _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith(("BOTSERVER_", "LLM_"))
        }
        env["BOTSERVER_ADMIN_TOKEN"] = ADMIN_TOKEN
        env["BOTSERVER_KB_INGEST"] = "off"
        gateway = Process(
            "gateway",
            [
                str(args.botserver),
                "serve",
                "--host",
                HOST,
                "--port",
                str(gateway_port),
                "--bots",
                str(tmp / "bots"),
                "--data-dir",
                str(tmp / "data"),
            ],
            tmp / "gateway.log",
            env,
        )
        relay = Process(
            "relay",
            [
                sys.executable,
                "-m",
                "bench.bench_first_delta",
                "--relay",
                str(relay_port),
                model_url,
                api_url,
            ],
            tmp / "relay.log",
        )
        processes += [gateway, relay]
        for process in processes:
            process.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, gateway.wait_port, gateway_port, "/ready", 120.0)
        await loop.run_in_executor(None, relay.wait_port, relay_port, "/ready", 30.0)

        samples: dict[str, list[float]] = {
            "web": [],
            "relay": [],
            "telegram": [],
            "telegram_relay": [],
        }
        web_path = f"/api/v1/bots/{BOT}/messages"
        auth = {"Accept": "text/event-stream", "Authorization": f"Bearer {ADMIN_TOKEN}"}
        run = 0
        async with aiohttp.ClientSession() as session:

            async def web(user: int) -> float:
                nonlocal run
                run += 1
                body = {"user_id": f"bench-{user}", "text": f"question run-{run}"}
                arrived = await _first_sse_delta(gateway_port, web_path, body, auth)
                return arrived - model.first_token[run]

            async def baseline() -> float:
                nonlocal run
                run += 1
                body = {"text": f"question run-{run}"}
                arrived = await _first_sse_delta(relay_port, "/relay", body, auth)
                return arrived - model.first_token[run]

            async def telegram(chat: int) -> float:
                nonlocal run
                run += 1
                update = {
                    "update_id": run,
                    "message": {
                        "message_id": run,
                        "from": {"id": chat, "is_bot": False, "first_name": "Ada"},
                        "chat": {"id": chat, "first_name": "Ada", "type": "private"},
                        "date": int(time.time()),
                        "text": f"question run-{run}",
                    },
                }
                done = bot_api.finished.setdefault(chat, asyncio.Event())
                headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
                url = f"http://{HOST}:{gateway_port}/webhooks/telegram/{BOT}"
                async with session.post(url, json=update, headers=headers) as resp:
                    if resp.status != 200:
                        raise BenchError(f"webhook: HTTP {resp.status}")
                try:
                    async with asyncio.timeout(30):
                        await done.wait()  # the final edit: the chat is quiet again
                except TimeoutError as e:
                    raise BenchError(f"chat {chat} got no final edit:\n{gateway.log_tail()}") from e
                return float(bot_api.first_send[chat] - model.first_token[run])

            async def telegram_baseline(chat: int) -> float:
                nonlocal run
                run += 1
                body = {"text": f"question run-{run}", "chat": chat}
                url = f"http://{HOST}:{relay_port}/relay-telegram"
                async with session.post(url, json=body) as resp:
                    if resp.status != 200:
                        raise BenchError(f"relay-telegram: HTTP {resp.status}")
                return float(bot_api.first_send[chat] - model.first_token[run])

            # Warm-up: connections, the SDK's client, the database's plans.
            for i in range(args.warmup):
                await web(i % 8)
                await baseline()
            await telegram(90_000)
            await telegram_baseline(90_001)
            for i in range(max(args.runs, args.telegram_runs)):
                if i < args.runs:
                    samples["web"].append(await web(i % 8))
                    samples["relay"].append(await baseline())
                if i < args.telegram_runs:
                    samples["telegram"].append(await telegram(100_000 + i))
                    samples["telegram_relay"].append(await telegram_baseline(200_000 + i))
                if args.progress and i % 20 == 19:
                    print(f"  {i + 1} runs", file=sys.stderr)
        return summary(samples)
    finally:
        for process in processes:
            process.stop()
        await bot_api.close()
        await model.close()


def print_table(result: dict[str, Any]) -> None:
    print(f"{'path':<28}{'runs':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    labels = {
        "web": "web (SSE), gateway",
        "relay": "web (SSE), bare relay",
        "telegram": "telegram, gateway",
        "telegram_relay": "telegram, bare relay",
    }
    for key, label in labels.items():
        row = result.get(key)
        if row:
            print(
                f"{label:<28}{row['runs']:>6}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
                f"{row['max_ms']:>10.2f}"
            )
    for ours in ("web", "telegram"):
        extra = result.get(f"{ours}_minus_baseline")
        if extra:
            label = f"{ours}: gateway minus relay"
            print(f"{label:<28}{'':>6}{extra['p50_ms']:>10.2f}{extra['p99_ms']:>10.2f}")
    verdicts = [
        f"{k} p99 {'<' if result[k]['p99_ms'] < 5 else '>='} 5 ms"
        for k in ("web", "telegram")
        if k in result
    ]
    print("target p99 < 5 ms: " + "; ".join(verdicts))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--relay"]:
        return _relay_main(int(argv[1]), argv[2], argv[3])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="web and relay runs (each)")
    parser.add_argument("--telegram-runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--lead", type=float, default=0.03, help="seconds before the 1st token")
    parser.add_argument("--quick", action="store_true", help="30/30/15 runs, 5 of warm-up")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--botserver", type=Path, default=BOTSERVER)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.telegram_runs, args.warmup = 30, 15, 5
    tmp = Path(tempfile.mkdtemp(prefix="bench-first-delta-"))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        result = asyncio.run(run_bench(args, tmp))
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
