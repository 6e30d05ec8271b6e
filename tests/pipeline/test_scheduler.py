"""SET SCHEDULE jobs: two gateway instances on one PostgreSQL run each occurrence once.

Each instance has its own pool, registry and scheduler; the job writes a row per run with a
real table store, and ``scheduled_runs`` keeps the occurrence each instance claimed.
"""

from __future__ import annotations

import asyncio
import itertools
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
