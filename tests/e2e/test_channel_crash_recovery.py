"""Provider webhooks across crashes and instances: real ``botserver serve`` processes.

The gateway runs as a subprocess on a fresh database of the PostgreSQL server;
a fake Telegram Bot API runs in the test process and counts what the user
would see. The README promises: a webhook answered 200 is claimed in the
inbox; its turn runs (again, once its lease has expired, if the process that
leased it died) and commits once; its reply is sent once; a part that may have
left when the process died is parked as ``unknown``, never sent again; and
instances sharing the database run each conversation in order, with or
without Redis; a model's answer that was streaming to Telegram at the kill leaves one
message, rewritten by the answer of the turn run again, never two answers; an album
claimed before the kill, in its window or with its turn running, is answered once.

The gateways run with ``BOTSERVER_LEASE`` of a few seconds (60 by default), so a
test that kills a process waits that long, once, for its leases to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg
import pytest

from tests.channels.fake_telegram import TOKEN, FakeBotApi
from tests.channels.gateway_harness import tg_update
from tests.llm import fake_openai
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer

BOT = "relay"
WRITER = "writer"  # no dialog: the model answers every message, streamed live
SECRET = "crash_webhook_secret-1"
# The lease a killed process leaves behind (BOTSERVER_LEASE); recovery also takes the
# restart and the poll that finds the expired lease.
LEASE = 8.0
RECOVERY = LEASE + 20.0
# Two gateways starting at once on a loaded 2-core machine took over 30 s (importing the
# model SDKs and loading a tokenizer each, ~2 s when quiet).
STARTUP_SECONDS = 90.0

# A line with "slow" in it waits inside its turn (the interpreter's WAIT), so that a kill
# lands between the claim and the commit; every line is echoed.
DIALOG = """\
TALK "Hello."
n = 0
DO WHILE n >= 0
    HEAR line
    IF INSTR(line, "slow") > 0 THEN
        WAIT 2
    END IF
    TALK "You said: " + line
LOOP
"""
GREETING = "Hello."


def echo(text: str) -> str:
    return f"You said: {text}"


# -- the fake Telegram API --------------------------------------------------------------------


ADMIN_TOKEN = "crash-recovery-admin-token"


@dataclass
class HoldingBotApi(FakeBotApi):
    """The fake Bot API; a message to a chat in :attr:`hold` is delivered (recorded, as
    Telegram shows it to the user) and then never confirmed: the sender cannot know."""

    hold: set[int] = field(default_factory=set)

    async def _sendmessage(self, params: dict[str, Any]) -> Any:
        message = await super()._sendmessage(params)
        if params.get("chat_id") in self.hold:
            await asyncio.sleep(3600)
        return message

    def texts(self, chat: int) -> list[str]:
        """What ``chat`` received, in the order it arrived."""
        return [m["text"] for (c, _), m in sorted(self.messages.items()) if c == chat]

    def received(self) -> Counter[tuple[int | str, str]]:
        """How many times each (chat, text) arrived."""
        return Counter((c, m["text"]) for (c, _), m in self.messages.items())


# -- the gateway as a subprocess --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Gateway:
    """``botserver serve`` in a subprocess, on a fixed port so that it can restart."""

    def __init__(
        self, name: str, bots: Path, data_dir: Path, database_url: str, redis_url: str | None
    ) -> None:
        self.name = name
        self.bots = bots
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSERVER_")}
        env.pop("REDIS_URL", None)
        env["DATABASE_URL"] = database_url
        env["BOTSERVER_LEASE"] = str(LEASE)
        env["BOTSERVER_ADMIN_TOKEN"] = ADMIN_TOKEN  # the channel state page is admin's
        if redis_url is not None:
            env["REDIS_URL"] = redis_url
        self.env = env
        self.process: asyncio.subprocess.Process | None = None

    def _log(self) -> IO[bytes]:
        return self.log_path.open("ab")

    async def start(self) -> None:
        botserver = Path(sys.executable).parent / "botserver"
        command = [str(botserver)] if botserver.exists() else [sys.executable, "-m", "gateway.cli"]
        with self._log() as log:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--bots",
                str(self.bots),
                "--data-dir",
                str(self.data_dir),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
            )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    pytest.fail(f"{self.name} exited before it was ready:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.url}/ready") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        pytest.fail(f"{self.name} not ready after {STARTUP_SECONDS:.0f} s:\n{self.log_tail()}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no drain, leases left as they were."""
        process, self.process = self.process, None
        assert process is not None and process.returncode is None, "not running"
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def database(server_database_url: str) -> AsyncIterator[str]:
    name = f"botserver_crash_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = server_database_url.rpartition("/")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database)
    yield conn
    await conn.close()


@pytest.fixture
async def telegram() -> AsyncIterator[HoldingBotApi]:
    fake = HoldingBotApi()
    await fake.start()
    yield fake
    fake.hold.clear()
    await fake.close()


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def bots(tmp_path: Path, telegram: HoldingBotApi, model: FakeOpenAI) -> Path:
    folder = tmp_path / "bots"
    config = {
        "telegram-bot-token": TOKEN,
        "telegram-webhook-secret": SECRET,
        "telegram-api-url": telegram.api_url,
    }
    llm = {"llm-url": f"{model.url}/v1", "llm-key": fake_openai.API_KEY, "llm-model": "gpt-4o"}
    for name, dialog, rows in ((BOT, DIALOG, config), (WRITER, None, config | llm)):
        package = folder / f"{name}.gbai"
        (package / f"{name}.gbdialog").mkdir(parents=True)
        (package / f"{name}.gbot").mkdir()
        if dialog is not None:
            (package / f"{name}.gbdialog" / "start.bas").write_text(dialog)
        lines = "".join(f"{k},{v}\n" for k, v in rows.items())
        (package / f"{name}.gbot" / "config.csv").write_text("name,value\n" + lines)
    return folder


@pytest.fixture
async def gateways(
    tmp_path: Path, bots: Path, database: str
) -> AsyncIterator[Callable[[str, str | None], Gateway]]:
    made: list[Gateway] = []

    def make(name: str, redis_url: str | None = None) -> Gateway:
        gateway = Gateway(name, bots, tmp_path / f"data-{name}", database, redis_url)
        made.append(gateway)
        return gateway

    yield make
    await asyncio.gather(*(g.stop() for g in made))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


# -- helpers ----------------------------------------------------------------------------------

_update_ids = itertools.count(1)


def update(chat: int, text: str) -> tuple[int, bytes]:
    """A Telegram update of a private chat, with a fresh ``update_id``."""
    update_id = next(_update_ids)
    return update_id, tg_update(update_id, text, chat)


async def post(http: aiohttp.ClientSession, gateway: Gateway, body: bytes, bot: str = BOT) -> int:
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with http.post(f"{gateway.url}/webhooks/telegram/{bot}", data=body, headers=headers) as r:
        return r.status


async def eventually(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any], within: float, what: str
) -> Any:
    """Wait until ``check()`` (a value or an awaitable) is truthy and return it."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def inbox_status(db: asyncpg.Connection, update_id: int) -> str | None:
    status: str | None = await db.fetchval(
        "SELECT status FROM inbox WHERE bot_id = $1 AND channel = 'telegram' AND external_id = $2",
        BOT,
        str(update_id),
    )
    return status


async def outbox_rows(db: asyncpg.Connection, chat: int) -> list[tuple[str, str, int]]:
    """``chat``'s replies in the outbox: (text, status, parts_sent), in order."""
    rows = await db.fetch(
        "SELECT message, status, parts_sent FROM outbox WHERE bot_id = $1"
        " AND channel = 'telegram' AND conversation = $2 ORDER BY seq",
        BOT,
        str(chat),
    )
    return [(_reply_text(r["message"]), r["status"], r["parts_sent"]) for r in rows]


def _reply_text(message: Any) -> str:
    data = json.loads(message) if isinstance(message, str) else message
    return str(data["text"])


async def parked_sends(http: aiohttp.ClientSession, gateway: Gateway) -> int:
    """What the operator's channel page says is parked (dead or unknown) for Telegram."""
    async with http.get(
        f"{gateway.url}/api/v1/bots/{BOT}/channels",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as resp:
        assert resp.status == 200
        channels = (await resp.json())["channels"]
    [state] = [c for c in channels if c["channel"] == "telegram"]
    count: int = state["parked_sends"]
    return count


# -- one gateway killed and restarted ---------------------------------------------------------

DONE = 101  # a conversation answered in full before the kill
MID_TURN = 102  # its turn is running (between claim and commit) at the kill
MID_SEND = 103  # its reply reached the user, the confirmation did not, at the kill
QUEUED = 104  # its reply is committed, refused once (429, retry after 5 s), unsent at the kill


async def test_a_gateway_killed_mid_turn_and_mid_send_recovers_each_reply_once(
    gateways: Callable[[str, str | None], Gateway],
    telegram: HoldingBotApi,
    db: asyncpg.Connection,
    http: aiohttp.ClientSession,
) -> None:
    gateway = gateways("one", None)
    await gateway.start()

    # DONE: both replies sent and recorded as sent before the kill.
    for text in ("hi", "first"):
        assert await post(http, gateway, update(DONE, text)[1]) == 200
    await eventually(lambda: telegram.texts(DONE) == [GREETING, echo("first")], 15, "DONE answered")
    await eventually(
        lambda: _all_sent(db, DONE, 2), 5, "DONE's replies recorded as sent before the kill"
    )
    # MID_SEND: the user gets the greeting, the gateway never hears back.
    telegram.hold.add(MID_SEND)
    assert await post(http, gateway, update(MID_SEND, "hi")[1]) == 200
    await eventually(lambda: telegram.texts(MID_SEND) == [GREETING], 15, "MID_SEND delivered")
    # QUEUED: greeted, then a reply the API refuses with a flood-control retry_after.
    assert await post(http, gateway, update(QUEUED, "hi")[1]) == 200
    await eventually(lambda: telegram.texts(QUEUED) == [GREETING], 15, "QUEUED greeted")
    telegram.fail_next("sendMessage", 429, retry_after=5)
    refused = len(telegram.calls_to("sendMessage")) + 1
    assert await post(http, gateway, update(QUEUED, "queued")[1]) == 200
    await eventually(
        lambda: len(telegram.calls_to("sendMessage")) == refused, 15, "QUEUED's reply refused"
    )
    await eventually(
        lambda: _statuses(db, QUEUED, ["sent", "pending"]), 5, "QUEUED's reply waiting"
    )
    # MID_TURN: greeted, then a slow turn that is claimed and running at the kill.
    assert await post(http, gateway, update(MID_TURN, "hi")[1]) == 200
    await eventually(lambda: telegram.texts(MID_TURN) == [GREETING], 15, "MID_TURN greeted")
    slow_id, slow = update(MID_TURN, "slow one")
    assert await post(http, gateway, slow) == 200  # answered only once claimed
    assert await inbox_status(db, slow_id) in ("pending", "running")
    await eventually(lambda: _is(inbox_status(db, slow_id), "running"), 5, "the slow turn running")

    await gateway.kill()
    assert telegram.texts(MID_TURN) == [GREETING]  # its reply had not been sent
    assert telegram.texts(QUEUED) == [GREETING]  # nor this one
    assert await inbox_status(db, slow_id) == "running"  # left leased by the dead process
    [(_, status, parts)] = await outbox_rows(db, MID_SEND)
    assert (status, parts) == ("sending", 0)  # on its way, not confirmed
    sends_before = len(telegram.calls_to("sendMessage"))
    telegram.hold.clear()

    killed_at = time.monotonic()
    await gateway.start()
    # The committed reply goes out once its retry is due, with no lease to wait for.
    await eventually(
        lambda: telegram.texts(QUEUED) == [GREETING, echo("queued")], 15, "QUEUED's reply sent"
    )
    # The slow turn runs again once its lease has expired, and is answered once.
    await eventually(
        lambda: telegram.texts(MID_TURN) == [GREETING, echo("slow one")],
        RECOVERY,
        "the killed turn answered after the lease",
    )
    assert time.monotonic() - killed_at < RECOVERY
    assert await inbox_status(db, slow_id) == "done"
    # The greeting in flight at the kill is unknown, for the operator, and not sent again.
    await eventually(
        lambda: _statuses(db, MID_SEND, ["unknown"]), RECOVERY, "MID_SEND parked as unknown"
    )
    error = await db.fetchval(
        "SELECT last_error FROM outbox WHERE conversation = $1", str(MID_SEND)
    )
    assert "may or may not have arrived" in error
    assert await parked_sends(http, gateway) == 1

    # The conversations go on; nothing sent before the kill was sent again.
    chats = (DONE, MID_SEND, MID_TURN, QUEUED)
    for chat in chats:
        assert await post(http, gateway, update(chat, "after")[1]) == 200
    await eventually(
        lambda: all(telegram.texts(c)[-1:] == [echo("after")] for c in chats),
        15,
        "every conversation answered after the restart",
    )
    await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
    assert telegram.texts(DONE) == [GREETING, echo("first"), echo("after")]
    assert telegram.texts(MID_SEND) == [GREETING, echo("after")]
    assert telegram.texts(MID_TURN) == [GREETING, echo("slow one"), echo("after")]
    assert telegram.texts(QUEUED) == [GREETING, echo("queued"), echo("after")]
    # Since the restart: the queued and the slow replies, the four "after" replies, and
    # nothing else.
    assert len(telegram.calls_to("sendMessage")) - sends_before == 6


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def _all_sent(db: asyncpg.Connection, chat: int, count: int) -> bool:
    rows = await outbox_rows(db, chat)
    return len(rows) == count and all(status == "sent" for _, status, _ in rows)


async def _statuses(db: asyncpg.Connection, chat: int, expected: list[str]) -> bool:
    return [status for _, status, _ in await outbox_rows(db, chat)] == expected


# -- killed while a model's answer streams -----------------------------------------------------

STREAMED = 105


async def test_a_gateway_killed_while_an_answer_streams_leaves_one_answer_after_restart(
    gateways: Callable[[str, str | None], Gateway],
    telegram: HoldingBotApi,
    model: FakeOpenAI,
    db: asyncpg.Connection,
    http: aiohttp.ClientSession,
) -> None:
    gateway = gateways("one", None)
    await gateway.start()
    model.script(
        Answer(text=tuple(f"first{i} " for i in range(40)), spacing=0.25),  # ~10 s of writing
        Answer(text=("The **answer** ", "of the ", "turn run ", "again."), spacing=0.2),
    )
    update_id, body = update(STREAMED, "tell me")
    assert await post(http, gateway, body, bot=WRITER) == 200

    def streaming() -> bool:
        writes = [w for w in telegram.calls if w.params.get("chat_id") == STREAMED]
        return len(writes) >= 3  # sent, then edited as the model writes

    await eventually(streaming, 20, "the answer streaming to Telegram")
    await gateway.kill()
    [(_, shown)] = [(k, m) for k, m in telegram.messages.items() if k[0] == STREAMED]
    assert shown["text"].startswith("first0 first1") and not shown["text"].endswith("first39")
    partial = await db.fetchval(
        "SELECT live FROM inbox WHERE bot_id = $1 AND external_id = $2", WRITER, str(update_id)
    )
    assert json.loads(partial) == [{"id": str(shown["message_id"])}]  # recorded at once

    await gateway.start()

    def finished() -> bool:
        writes = [w for w in telegram.calls if w.params.get("chat_id") == STREAMED]
        return bool(writes) and writes[-1].params.get("parse_mode") == "HTML"

    await eventually(finished, RECOVERY, "the turn run again and its answer finished")
    await asyncio.sleep(0.5)  # a second message would have arrived by now
    # One message: the first attempt's, rewritten by the second attempt's answer.
    assert telegram.texts(STREAMED) == ["The answer of the turn run again."]
    sends = [c for c in telegram.calls_to("sendMessage") if c.params["chat_id"] == STREAMED]
    assert len(sends) == 1
    edits = [c for c in telegram.calls_to("editMessageText") if c.params["chat_id"] == STREAMED]
    assert {c.params["message_id"] for c in edits} == {shown["message_id"]}
    assert edits[-1].params["text"] == "The <b>answer</b> of the turn run again."
    status, attempts = await db.fetchrow(
        "SELECT status, attempts FROM inbox WHERE bot_id = $1 AND external_id = $2",
        WRITER,
        str(update_id),
    )
    assert (status, attempts) == ("done", 2)
    assert len(model.calls) == 2


# -- two gateways on one database -------------------------------------------------------------

CONVERSATIONS = 50
MESSAGES = 4  # per conversation: a greeting, then three echoes


def conversation_texts(chat: int, slow: bool = False) -> list[str]:
    """What ``chat`` sends: "hi" (greeted), then three lines it gets echoed."""
    lines = [f"c{chat}m{k}" for k in range(2, MESSAGES + 1)]
    if slow:
        lines[0] = f"slow c{chat}m2"
    return ["hi", *lines]


def expected_replies(chat: int, slow: bool = False) -> list[str]:
    return [GREETING, *(echo(t) for t in conversation_texts(chat, slow)[1:])]


async def converse(
    http: aiohttp.ClientSession,
    chat: int,
    instances: list[Gateway],
    rng: random.Random,
    acked: list[int],
    slow: bool = False,
) -> None:
    """Post ``chat``'s messages in order (each after the previous one's 200), each to a
    random instance; an instance that does not answer 200 is retried on another, as a
    provider retries a webhook (a redelivery that the inbox recognises)."""
    for text in conversation_texts(chat, slow):
        await asyncio.sleep(rng.uniform(0, 0.05))
        _, body = update(chat, text)
        first = rng.randrange(len(instances))
        for attempt in range(20):
            gateway = instances[(first + attempt) % len(instances)]
            if gateway.process is not None:
                try:
                    if await post(http, gateway, body) == 200:
                        break
                except (aiohttp.ClientError, OSError):
                    pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no instance took {text!r} of chat {chat}")
        acked.append(chat)


@pytest.mark.parametrize("redis", [False, True], ids=["no-redis", "redis"])
async def test_two_instances_answer_every_message_once_in_order(
    gateways: Callable[[str, str | None], Gateway],
    telegram: HoldingBotApi,
    http: aiohttp.ClientSession,
    redis: bool,
) -> None:
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379") if redis else None
    instances = [gateways("a", redis_url), gateways("b", redis_url)]
    await asyncio.gather(*(g.start() for g in instances))
    rng = random.Random(7)
    chats = [1000 + c for c in range(CONVERSATIONS)]
    acked: list[int] = []
    await asyncio.gather(*(converse(http, c, instances, rng, acked) for c in chats))
    assert len(acked) == CONVERSATIONS * MESSAGES

    total = CONVERSATIONS * MESSAGES
    await eventually(lambda: len(telegram.messages) >= total, 45, "every reply delivered")
    await asyncio.sleep(0.5)  # a duplicate would have arrived by now
    received = telegram.received()
    assert sum(received.values()) == total
    duplicates = {key: n for key, n in received.items() if n > 1}
    assert duplicates == {}
    for chat in chats:
        assert telegram.texts(chat) == expected_replies(chat)


async def test_when_one_of_two_instances_is_killed_the_other_finishes_its_claims(
    gateways: Callable[[str, str | None], Gateway],
    telegram: HoldingBotApi,
    db: asyncpg.Connection,
    http: aiohttp.ClientSession,
) -> None:
    survivor, victim = gateways("a", None), gateways("b", None)
    instances = [survivor, victim]
    await asyncio.gather(*(g.start() for g in instances))
    rng = random.Random(11)
    chats = [2000 + c for c in range(CONVERSATIONS)]
    acked: list[int] = []
    # Every conversation's second message is a slow turn (WAIT 2): at the kill, turns
    # are running on both instances.
    load = asyncio.gather(*(converse(http, c, instances, rng, acked, slow=True) for c in chats))
    await eventually(lambda: len(acked) >= CONVERSATIONS * 2, 30, "half the load acknowledged")
    await eventually(
        # Instances lease turns at random: with this many running, both hold some.
        lambda: db.fetchval("SELECT count(*) >= 16 FROM inbox WHERE status = 'running'"),
        15,
        "turns running",
    )
    await victim.kill()
    killed_at = time.monotonic()
    await load  # what the victim no longer answers goes to the survivor
    assert len(acked) == CONVERSATIONS * MESSAGES

    # Every claim ends done on the survivor, those the victim held once their lease expired.
    async def all_done() -> bool:
        return bool(
            await db.fetchval(
                "SELECT bool_and(status = 'done') AND count(*) = $1 FROM inbox", len(acked)
            )
        )

    await eventually(all_done, RECOVERY, "every claim finished by the survivor")
    retaken = await db.fetchval("SELECT count(*) FROM inbox WHERE attempts > 1")
    assert retaken >= 1  # the victim's running turns, leased again after it died
    assert time.monotonic() - killed_at >= LEASE - 5  # and only once their lease was up

    # Every reply is sent, or parked as unknown when it was on its way at the kill.
    async def outbox_settled() -> bool:
        return not await db.fetchval(
            "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')"
        )

    await eventually(outbox_settled, RECOVERY, "every reply sent or parked")
    await asyncio.sleep(0.5)
    statuses = Counter(
        r[0] for r in await db.fetch("SELECT status FROM outbox WHERE bot_id = $1", BOT)
    )
    unknown = {
        (int(r["conversation"]), _reply_text(r["message"]))
        for r in await db.fetch("SELECT conversation, message FROM outbox WHERE status = 'unknown'")
    }
    assert set(statuses) <= {"sent", "unknown"}
    assert statuses["sent"] + statuses["unknown"] == CONVERSATIONS * MESSAGES
    assert statuses["unknown"] == len(unknown)
    assert await parked_sends(http, survivor) == len(unknown)

    received = telegram.received()
    assert max(received.values()) == 1  # nothing twice
    for chat in chats:
        expected = expected_replies(chat, slow=True)
        got = telegram.texts(chat)
        # Each reply once, in order; only one parked as unknown may be missing.
        missing = [t for t in expected if t not in got]
        assert all((chat, t) in unknown for t in missing), (chat, got)
        assert got == [t for t in expected if t in got], (chat, got)
    print(
        f"killed one of two instances: {retaken} turns retaken after the lease,"
        f" {len(unknown)} replies parked as unknown, {statuses['sent']} sent"
    )


# -- albums across a kill ------------------------------------------------------------------------

ALBUM_MID_TURN = 111  # its album's turn (the items folded into one) is running at the kill
ALBUM_IN_WINDOW = 112  # its album's items are claimed and still waiting out their window


def album_item(chat: int, group: str, file_id: str, caption: str = "") -> tuple[int, bytes]:
    """One photo of a Telegram album: an update of its own sharing ``media_group_id``."""
    update_id = next(_update_ids)
    message: dict[str, Any] = {
        "message_id": update_id,
        "from": {"id": chat, "is_bot": False, "first_name": "Ada"},
        "chat": {"id": chat, "first_name": "Ada", "type": "private"},
        "date": int(time.time()),
        "media_group_id": group,
        "photo": [{"file_id": file_id, "file_unique_id": file_id, "width": 800, "height": 600}],
    }
    if caption:
        message["caption"] = caption
    return update_id, json.dumps({"update_id": update_id, "message": message}).encode()


async def _album_rows(db: asyncpg.Connection, ids: list[int]) -> list[str]:
    rows = await db.fetch(
        "SELECT status FROM inbox WHERE bot_id = $1 AND external_id = ANY($2::text[]) ORDER BY seq",
        BOT,
        [str(i) for i in ids],
    )
    return [r[0] for r in rows]


async def test_albums_killed_in_their_window_or_mid_turn_are_answered_once_after_restart(
    gateways: Callable[[str, str | None], Gateway],
    telegram: HoldingBotApi,
    db: asyncpg.Connection,
    http: aiohttp.ClientSession,
) -> None:
    gateway = gateways("albums", None)
    await gateway.start()
    for chat in (ALBUM_MID_TURN, ALBUM_IN_WINDOW):
        assert await post(http, gateway, update(chat, "hi")[1]) == 200
    for chat in (ALBUM_MID_TURN, ALBUM_IN_WINDOW):
        await eventually(lambda c=chat: telegram.texts(c) == [GREETING], 15, "greeted")
    for n in range(6):
        telegram.add_file(f"album-{n}", bytes([n]) * (64 + n), file_path=f"photos/{n}.jpg")

    # ALBUM_MID_TURN: the caption makes its turn wait inside the dialog.
    slow = [
        album_item(ALBUM_MID_TURN, "900", "album-0", "slow album"),
        album_item(ALBUM_MID_TURN, "900", "album-1"),
        album_item(ALBUM_MID_TURN, "900", "album-2"),
    ]
    for _, body in slow:
        assert await post(http, gateway, body) == 200
    slow_ids = [i for i, _ in slow]
    await eventually(
        lambda: _is(_album_rows(db, slow_ids), ["running", "merged", "merged"]),
        10,
        "the album folded into one running turn",
    )
    # ALBUM_IN_WINDOW: claimed (answered 200), then the process dies before the window ends.
    waiting = [
        album_item(ALBUM_IN_WINDOW, "901", "album-3", "my trip"),
        album_item(ALBUM_IN_WINDOW, "901", "album-4"),
        album_item(ALBUM_IN_WINDOW, "901", "album-5"),
    ]
    for _, body in waiting:
        assert await post(http, gateway, body) == 200
    await gateway.kill()
    waiting_ids = [i for i, _ in waiting]
    assert await _album_rows(db, waiting_ids) == ["pending"] * 3
    assert await _album_rows(db, slow_ids) == ["running", "merged", "merged"]
    assert telegram.texts(ALBUM_MID_TURN) == [GREETING]
    assert telegram.texts(ALBUM_IN_WINDOW) == [GREETING]

    await gateway.start()
    await eventually(
        lambda: telegram.texts(ALBUM_IN_WINDOW) == [GREETING, echo("my trip")],
        15,
        "the album claimed before the kill answered once",
    )
    await eventually(
        lambda: telegram.texts(ALBUM_MID_TURN) == [GREETING, echo("slow album")],
        RECOVERY,
        "the album whose turn was killed answered once, after its lease",
    )
    await asyncio.sleep(1.5)  # a second answer (an item run on its own) would be here by now
    assert telegram.texts(ALBUM_MID_TURN) == [GREETING, echo("slow album")]
    assert telegram.texts(ALBUM_IN_WINDOW) == [GREETING, echo("my trip")]
    for ids in (slow_ids, waiting_ids):
        assert await _album_rows(db, ids) == ["done", "merged", "merged"]
    attempts = await db.fetchval(
        "SELECT attempts FROM inbox WHERE bot_id = $1 AND external_id = $2", BOT, str(slow_ids[0])
    )
    assert attempts == 2  # the killed turn, run again on the merged message it left
    # Each turn's user message carries its album's three photos, in order.
    for chat, first in ((ALBUM_MID_TURN, 0), (ALBUM_IN_WINDOW, 3)):
        attachments = await db.fetchval(
            "SELECT h.attachments FROM message_history h JOIN user_sessions s"
            " ON s.id = h.session_id WHERE s.bot_id = $1 AND s.user_id = $2"
            " AND h.role = 'user' AND h.attachments IS NOT NULL",
            BOT,
            str(chat),
        )
        sizes = [a["size"] for a in json.loads(attachments)]
        assert sizes == [64 + first, 65 + first, 66 + first], attachments
