"""A dialog is never left at a wrong instruction nor lost to an outage.

- A store that cannot be reached inside a keyword (a real PostgreSQL table store whose pool is
  closed), or that times out waiting for a lock another connection holds, fails the turn as
  ours: ``ON ERROR RESUME NEXT`` does not catch it, the dialog does not end, the session is
  not saved, and the message sent again finds the dialog where it was.
- A waiting dialog whose program changed (its source, or the interpreter's instruction format)
  starts again from the top, with a log line, instead of resuming at a wrong instruction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from basic import compiler
from basic.errors import HostUnavailable
from channels.base import InboundMessage, OutboundMessage
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.errors import TurnFailed
from pipeline.services import Services
from storage.postgres import DatabaseError, create_pool
from storage.postgres_tables import PostgresTableStore
from storage.services import Stores

VAULT = """\
ON ERROR RESUME NEXT
TALK "Which code?"
HEAR code
rows = FIND "codes.csv", "code = " + code
TALK "Found " + LEN(rows) + " for " + code
"""
CODES = "code,owner\n42,ana\n"


class _Replies:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def delta(self, text: str) -> None:
        pass

    async def message(self, message: OutboundMessage) -> None:
        self.texts.append(message.text)


Send = Callable[[Dispatcher, str], Awaitable[list[str]]]


@pytest.fixture
async def vault(tmp_path: Path, stores: Stores) -> BotRegistry:
    package = tmp_path / "vault.gbai"
    (package / "vault.gbdialog").mkdir(parents=True)
    (package / "vault.gbdialog" / "start.bas").write_text(VAULT)
    (package / "vault.gbdata").mkdir()
    (package / "vault.gbdata" / "codes.csv").write_text(CODES)
    registry = BotRegistry(tmp_path, tables=stores.tables)
    await registry.load_all()
    return registry


def conversation(user: str) -> Send:

    async def send(dispatcher: Dispatcher, text: str) -> list[str]:
        sink = _Replies()
        message = InboundMessage(
            channel="test",
            bot="vault",
            conversation=user,
            sender=user,
            external_id=uuid.uuid4().hex,
            text=text,
        )
        await dispatcher.handle(message, sink)
        return sink.texts

    return send


async def test_a_store_outage_in_a_keyword_fails_the_turn_and_keeps_the_dialog_waiting(
    vault: BotRegistry, services: Services, stores: Stores, server_database_url: str
) -> None:
    closed = await create_pool(server_database_url, min_size=1, max_size=1)
    await closed.close()  # the table store's connection is gone, as when a server stops
    working = Dispatcher(vault, services)
    broken = Dispatcher(vault, replace(services, tables=PostgresTableStore(closed)))
    user = f"u-{uuid.uuid4().hex[:8]}"
    send = conversation(user)
    assert await send(working, "hi") == ["Which code?"]
    before = await _session_state(stores, user)

    with pytest.raises(TurnFailed) as failed:
        await send(broken, "42")
    host_error = failed.value.__cause__
    assert isinstance(host_error, HostUnavailable)
    assert isinstance(host_error.__cause__, DatabaseError)
    assert host_error.keyword == "FIND"
    assert await _session_state(stores, user) == before  # not saved: still waiting at HEAR

    assert await send(working, "42") == ["Found 1 for 42"]  # the retry resumes where it was


async def test_a_lock_timeout_in_a_keyword_fails_the_turn_and_keeps_the_dialog_waiting(
    vault: BotRegistry, services: Services, stores: Stores, server_database_url: str
) -> None:
    """Another connection holds the rows' table locked: the table store's FIND waits for
    PostgreSQL's lock_timeout and fails; the turn fails, to be retried, and the retry (the
    lock released) resumes the dialog at its HEAR."""
    schema = await stores.pool.fetchval("SELECT current_schema()")
    impatient = await create_pool(server_database_url, schema=schema, min_size=1, max_size=1)
    await impatient.execute("SET lock_timeout = '200ms'")  # its only connection keeps it
    working = Dispatcher(vault, services)
    waiting = Dispatcher(vault, replace(services, tables=PostgresTableStore(impatient)))
    user = f"u-{uuid.uuid4().hex[:8]}"
    send = conversation(user)
    assert await send(working, "hi") == ["Which code?"]
    before = await _session_state(stores, user)
    holder = await stores.pool.acquire()
    try:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("LOCK TABLE bot_table_rows IN ACCESS EXCLUSIVE MODE")
        try:
            with pytest.raises(TurnFailed) as failed:
                await send(waiting, "42")
        finally:
            await locked.rollback()
    finally:
        await stores.pool.release(holder)
        await impatient.close()
    host_error = failed.value.__cause__
    assert isinstance(host_error, HostUnavailable)
    assert host_error.keyword == "FIND"
    assert isinstance(host_error.__cause__, DatabaseError)
    assert isinstance(host_error.__cause__.__cause__, asyncpg.LockNotAvailableError)
    assert await _session_state(stores, user) == before  # not saved: still waiting at HEAR

    assert await send(working, "42") == ["Found 1 for 42"]  # the retry resumes where it was


async def _session_state(stores: Stores, user: str) -> dict[str, object]:
    session = await stores.conversations.find_active(bot_id="vault", channel="test", user_id=user)
    assert session is not None
    return session.state


async def test_an_upgraded_interpreter_restarts_a_waiting_dialog_with_a_log_line(
    vault: BotRegistry,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    send = conversation(f"u-{uuid.uuid4().hex[:8]}")
    assert await send(Dispatcher(vault, services), "hi") == ["Which code?"]
    # the same source compiled by an interpreter whose instruction format changed
    monkeypatch.setattr(compiler, "INSTRUCTION_FORMAT", compiler.INSTRUCTION_FORMAT + 1)
    await vault.reload("vault")
    with caplog.at_level(logging.WARNING, logger="pipeline.dialog"):
        assert await send(Dispatcher(vault, services), "42") == ["Which code?"]
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        f"{vault.bots_dir}/vault.gbai/vault.gbdialog/start.bas changed since the dialog waited"
    ]
    assert await send(Dispatcher(vault, services), "42") == ["Found 1 for 42"]


async def test_an_edited_dialog_restarts_instead_of_resuming_at_a_wrong_line(
    vault: BotRegistry, services: Services
) -> None:
    send = conversation(f"u-{uuid.uuid4().hex[:8]}")
    assert await send(Dispatcher(vault, services), "hi") == ["Which code?"]
    start = vault.bots_dir / "vault.gbai" / "vault.gbdialog" / "start.bas"
    start.write_text('TALK "Welcome back"\n' + VAULT)
    await vault.reload("vault")
    assert await send(Dispatcher(vault, services), "42") == ["Welcome back", "Which code?"]
