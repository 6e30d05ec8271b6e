"""SET SCHEDULE jobs: two gateway instances on one PostgreSQL run each occurrence once.

Each instance has its own pool, registry and scheduler; the job writes a row per run with a
real table store, and ``scheduled_runs`` keeps the occurrence each instance claimed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import re
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.bots import BotRegistry
from pipeline.scheduler import Scheduler
from pipeline.services import Services
from storage.postgres import create_pool
from storage.postgres_tables import PostgresTableStore
from storage.services import Stores

TICK = """\
SET SCHEDULE "* * * * * *"
TALK "tick"
INSERT "ticks.csv", #{ at: NOW() }
"""


@pytest.fixture
def ticker(tmp_path: Path) -> Path:
    bot = f"ticker-{uuid.uuid4().hex[:6]}"
    dialogs = tmp_path / f"{bot}.gbai" / f"{bot}.gbdialog"
    dialogs.mkdir(parents=True)
    (dialogs / "tick.bas").write_text(TICK)
    return tmp_path


async def test_two_instances_run_each_occurrence_of_a_job_every_second_once(
    ticker: Path, stores: Stores, services: Services, server_database_url: str
) -> None:
    schema = await stores.pool.fetchval("SELECT current_schema()")
    schedulers: list[Scheduler] = []
    pools = []
    try:
        for instance in ("a", "b"):
            pool = await create_pool(server_database_url, schema=schema, min_size=1, max_size=4)
            pools.append(pool)
            registry = BotRegistry(ticker)
            await registry.load_all()
            (bot,) = registry.names()
            assert registry.get(bot) is not None
            own = replace(services, tables=PostgresTableStore(pool))
            schedulers.append(Scheduler(registry, own, pool, instance=instance, tick=0.05))
        for scheduler in schedulers:
            scheduler.start()
        await asyncio.sleep(10)
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
        for pool in pools:
            await pool.close()
    runs = await stores.pool.fetch(
        "SELECT due_at, instance FROM scheduled_runs WHERE bot_id = $1 ORDER BY due_at", bot
    )
    ticks = await stores.tables.find(bot, "ticks.csv", [])
    assert 9 <= len(runs) <= 11
    dues = [r["due_at"] for r in runs]
    assert all((b - a).total_seconds() == 1 for a, b in itertools.pairwise(dues))
    assert len(ticks) == len(runs)  # each claimed occurrence ran once, none ran twice


FAILING = """\
SET SCHEDULE "0 */5 * * * *"
TALK "checking"
TALK TO "+5511999999999", "nobody reads this"
"""


async def test_a_jobs_error_is_logged_with_file_and_line_and_the_next_occurrence_runs(
    tmp_path: Path, stores: Stores, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The clock is the scheduler's: occurrences at 10:00 and 10:05, each failing on its
    TALK TO (proactive messages are a capability not built yet), each logged."""
    bot = f"failing-{uuid.uuid4().hex[:6]}"
    dialogs = tmp_path / f"{bot}.gbai" / f"{bot}.gbdialog"
    dialogs.mkdir(parents=True)
    (dialogs / "nightly.bas").write_text(FAILING)
    registry = BotRegistry(tmp_path)
    await registry.load_all()
    now = [dt.datetime(2030, 1, 1, 9, 59, 30, tzinfo=dt.UTC)]
    scheduler = Scheduler(
        registry, services, stores.pool, instance="solo", clock=lambda: now[0], grace=60
    )
    with caplog.at_level(logging.ERROR, logger="pipeline.scheduler"):
        assert await scheduler.run_due() == 0  # first look: 10:00 is the next occurrence
        now[0] = dt.datetime(2030, 1, 1, 10, 0, 1, tzinfo=dt.UTC)
        assert await scheduler.run_due() == 1
        assert await scheduler.run_due() == 0  # claimed already: not again
        now[0] = dt.datetime(2030, 1, 1, 10, 5, 0, tzinfo=dt.UTC)
        assert await scheduler.run_due() == 1
        await scheduler.stop()  # waits for the jobs it started
    logged = [r.getMessage() for r in caplog.records if r.name == "pipeline.scheduler"]
    assert [re.sub(r"^.*?(nightly\.bas)", r"\1", line) for line in logged] == [
        "nightly.bas:3: TALK TO needs the host capability 'talk_to', which is not available"
    ] * 2
    assert [line.split(": ")[0] for line in logged] == [
        f"scheduled dialog bot={bot} due=2030-01-01T10:00:00+00:00",
        f"scheduled dialog bot={bot} due=2030-01-01T10:05:00+00:00",
    ]
    runs = await stores.pool.fetch(
        "SELECT due_at, instance FROM scheduled_runs WHERE bot_id = $1 ORDER BY due_at", bot
    )
    assert [(r["due_at"].isoformat(), r["instance"]) for r in runs] == [
        ("2030-01-01T10:00:00+00:00", "solo"),
        ("2030-01-01T10:05:00+00:00", "solo"),
    ]


async def test_claims_older_than_keep_are_pruned_and_recent_ones_kept(
    tmp_path: Path, stores: Stores, services: Services
) -> None:
    bot = f"pruned-{uuid.uuid4().hex[:6]}"
    now = dt.datetime(2001, 6, 1, 12, 0, 0, tzinfo=dt.UTC)  # before other tests' claims
    for hours in (49, 25, 23, 0):
        await stores.pool.execute(
            "INSERT INTO scheduled_runs (bot_id, dialog, due_at, instance) VALUES ($1, $2, $3, $4)",
            bot,
            "job",
            now - dt.timedelta(hours=hours),
            "a",
        )
    registry = BotRegistry(tmp_path)
    scheduler = Scheduler(registry, services, stores.pool, clock=lambda: now, keep=86400)
    assert await scheduler.prune() == 2
    left = await stores.pool.fetch(
        "SELECT due_at FROM scheduled_runs WHERE bot_id = $1 ORDER BY due_at", bot
    )
    assert [now - r["due_at"] for r in left] == [dt.timedelta(hours=23), dt.timedelta(0)]
