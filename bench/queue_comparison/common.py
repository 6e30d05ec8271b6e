"""Shared setup for the queue benchmarks: databases, schemas, message generator."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import asyncpg

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
DBS = {"ours": "qbench_ours", "proc": "qbench_proc", "pgq": "qbench_pgq"}
POOL_SIZE = 10
CONVERSATIONS = 200


def dsn(kind: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{DBS[kind]}"


async def recreate_db(kind: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DBS[kind]} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DBS[kind]}")
    finally:
        await conn.close()
    if kind == "ours":
        from storage.migrate import migrate

        c = await asyncpg.connect(dsn("ours"))
        try:
            await migrate(c)
        finally:
            await c.close()
    elif kind == "proc":
        app = proc_app()
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
    elif kind == "pgq":
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        c = await asyncpg.connect(dsn("pgq"))
        try:
            await Queries(AsyncpgDriver(c)).install()
        finally:
            await c.close()


async def drop_dbs() -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        for name in DBS.values():
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


HOOK = None  # claim.py sets this to its tracker's turn


def proc_app():
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=dsn("proc"), min_size=POOL_SIZE, max_size=POOL_SIZE
        )
    )

    @app.task(name="turn", queue="inbox")
    async def turn(conversation=None, n=None, **kwargs):  # the no-op turn
        if HOOK is not None:
            await HOOK(conversation, n)

    return app


def messages(n: int, run: int, conversations: int = CONVERSATIONS):
    """n messages round-robin over `conversations`; external ids unique per run."""
    now = datetime.now(UTC)
    for i in range(n):
        conv = f"conv-{i % conversations}"
        yield {
            "external_id": f"r{run}-m{i}",
            "conversation": conv,
            "n": i,
            "message": {"text": f"hello {i}", "from": conv, "type": "text"},
            "received_at": now,
        }


def med(xs):
    return statistics.median(xs)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]
