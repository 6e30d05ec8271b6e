"""Functional checks: (1) does a redelivery of an already-finished message get refused,
(2) what happens when the process dies after the turn committed its own writes but before
the queue library marked the job finished.

usage: venv/bin/python crash.py        (runs ours, procrastinate, pgqueuer; prints findings)
The turn writes one row into `turns` (standing for session + history + outbox) in its own
committed transaction; the child process then calls os._exit(1) before the library's finish.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from bench.queue_comparison import common

PY = sys.executable
TURNS = "CREATE TABLE turns (external_id text, at timestamptz DEFAULT clock_timestamp())"


async def turns(kind):
    c = await asyncpg.connect(common.dsn(kind))
    rows = await c.fetch("SELECT external_id, count(*) FROM turns GROUP BY 1 ORDER BY 1")
    await c.close()
    return {r[0]: r[1] for r in rows}


async def sql(kind, q, *a):
    c = await asyncpg.connect(common.dsn(kind))
    try:
        return await c.fetch(q, *a)
    finally:
        await c.close()


# ---- children: run the library's worker; the turn commits, then the process dies ----------
async def child(kind):
    async def write_turn(ext):
        c = await asyncpg.connect(common.dsn(kind))
        await c.execute("INSERT INTO turns (external_id) VALUES ($1)", ext)  # autocommit
        await c.close()
        os._exit(1)  # crash: our writes are committed, the library's finish never runs

    if kind == "proc":
        from procrastinate import worker as pw

        async def hook(conversation, n):
            await write_turn(f"m{n}")

        common.HOOK = hook
        app = common.proc_app()
        async with app.open_async():
            await pw.Worker(
                app,
                queues=["inbox"],
                concurrency=1,
                wait=True,
                install_signal_handlers=False,
                update_heartbeat_interval=0.5,
            ).run()
    else:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries

        c = await asyncpg.connect(common.dsn("pgq"))
        qm = QueueManager(Queries(AsyncpgDriver(c)))

        @qm.entrypoint("turn")
        async def turn(job):
            await write_turn(orjson.loads(job.payload)["external_id"])

        await qm.run(batch_size=1, heartbeat_timeout=timedelta(seconds=2))


# ---- ours --------------------------------------------------------------------------------
async def ours():
    from storage.base import InboxItem
    from storage.inbox import PostgresInbox

    await common.recreate_db("ours")
    pool = await asyncpg.create_pool(common.dsn("ours"), min_size=1, max_size=2)
    inbox = PostgresInbox(pool)
    item = InboxItem("default", "whatsapp", "m0", "conv-0", datetime.now(UTC), {"text": "hi"})
    first = await inbox.put(item)
    dup_while_pending = await inbox.put(item)
    [claim] = await inbox.claim(limit=1, lease=30)
    await inbox.finish(claim, status="done")
    dup_after_done = await inbox.put(item)
    await inbox.close()
    await pool.close()
    print(
        f"ours: put -> seq {first}; redelivery while pending -> {dup_while_pending}; "
        f"redelivery after done -> {dup_after_done}"
    )
    print(
        "ours: the done mark is the `done` CTE of storage/postgres.py _SAVE, the same "
        "statement (one transaction) as the session/history/outbox writes: a crash before "
        "it commits loses both, the lease expires and the turn runs again with nothing of "
        "the first attempt committed; after it commits, the row is done (never re-claimed)."
    )


# ---- procrastinate -------------------------------------------------------------------------
async def proc():
    import procrastinate

    await common.recreate_db("proc")
    await sql("proc", TURNS)
    app = common.proc_app()
    async with app.open_async():
        t = app.tasks["turn"]
        for n in (1, 2):  # two messages of one conversation
            await t.configure(lock="conv-0", queueing_lock=f"m{n}").defer_async(
                conversation="conv-0", n=n
            )
        try:
            await t.configure(lock="conv-0", queueing_lock="m1").defer_async(
                conversation="conv-0", n=1
            )
            dup_todo = "accepted"
        except procrastinate.exceptions.AlreadyEnqueued:
            dup_todo = "refused (AlreadyEnqueued)"
    print(f"procrastinate: redelivery of m1 while todo -> {dup_todo}")

    await asyncio.to_thread(
        subprocess.run,
        [PY, "-m", "bench.queue_comparison.crash", "child", "proc"],
        check=False,
        timeout=60,
    )
    st = await sql("proc", "SELECT args->>'n' AS n, status FROM procrastinate_jobs ORDER BY id")
    print(
        f"procrastinate: after the crash: turns={await turns('proc')}, "
        f"jobs={[(r['n'], r['status']) for r in st]}"
    )

    # a redelivery of m1 now (its job is 'doing'): queueing_lock only covers 'todo'
    async with app.open_async():
        await (
            app.tasks["turn"]
            .configure(lock="conv-0", queueing_lock="m1")
            .defer_async(conversation="conv-0", n=1)
        )
        print("procrastinate: redelivery of m1 while its job is 'doing' -> accepted (new job)")
        await sql(
            "proc",
            "DELETE FROM procrastinate_jobs WHERE id = (SELECT max(id) FROM procrastinate_jobs)",
        )  # drop it again: the crash case is the point

        ran = []

        async def hook(conversation, n):
            ran.append(f"m{n}")
            c = await asyncpg.connect(common.dsn("proc"))
            await c.execute("INSERT INTO turns (external_id) VALUES ($1)", f"m{n}")
            await c.close()

        common.HOOK = hook
        app2 = common.proc_app()
        async with app2.open_async():
            from procrastinate import worker as pw

            w = pw.Worker(
                app2,
                queues=["inbox"],
                concurrency=4,
                wait=True,
                fetch_job_polling_interval=0.2,
                install_signal_handlers=False,
            )
            wt = asyncio.create_task(w.run())
            await asyncio.sleep(3)
            print(
                f"procrastinate: a new worker for 3 s with the dead job still 'doing' ran "
                f"{ran} (m2 is behind m1's lock)"
            )
            # the documented recovery: retry stalled jobs (workers without heartbeat)
            stalled = await app2.job_manager.get_stalled_jobs(seconds_since_heartbeat=2)
            for job in stalled:
                await app2.job_manager.retry_job(job)
            print(f"procrastinate: get_stalled_jobs -> {[j.task_kwargs for j in stalled]}, retried")
            await asyncio.sleep(3)
            w.stop()
            await wt
        print(f"procrastinate: after recovery: turns={await turns('proc')} (m1's turn ran twice)")
        st = await sql("proc", "SELECT args->>'n' AS n, status FROM procrastinate_jobs ORDER BY id")
        print(f"procrastinate: jobs={[(r['n'], r['status']) for r in st]}")
        await (
            app.tasks["turn"]
            .configure(lock="conv-0", queueing_lock="m1")
            .defer_async(conversation="conv-0", n=1)
        )
        print("procrastinate: redelivery of m1 after it succeeded -> accepted (new job)")


# ---- pgqueuer ------------------------------------------------------------------------------
async def pgq():
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    await common.recreate_db("pgq")
    await sql("pgq", TURNS)
    c = await asyncpg.connect(common.dsn("pgq"))
    q = Queries(AsyncpgDriver(c))
    pay = orjson.dumps({"external_id": "m1", "conversation": "conv-0"})
    first = await q.enqueue("turn", pay, dedupe_key="m1", on_conflict="skip")
    dup_queued = await q.enqueue("turn", pay, dedupe_key="m1", on_conflict="skip")
    await c.close()
    print(f"pgqueuer: enqueue m1 -> {first}; redelivery while queued -> {dup_queued}")
    await asyncio.to_thread(
        subprocess.run,
        [PY, "-m", "bench.queue_comparison.crash", "child", "pgq"],
        check=False,
        timeout=60,
    )
    st = await sql("pgq", "SELECT id, status FROM pgqueuer ORDER BY id")
    print(
        f"pgqueuer: after the crash: turns={await turns('pgq')}, "
        f"jobs={[(r['id'], r['status']) for r in st]}"
    )
    c = await asyncpg.connect(common.dsn("pgq"))
    q = Queries(AsyncpgDriver(c))
    print(
        f"pgqueuer: redelivery while picked -> "
        f"{await q.enqueue('turn', pay, dedupe_key='m1', on_conflict='skip')}"
    )
    await c.close()
    await asyncio.sleep(2.5)  # past heartbeat_timeout: the job is stale
    c = await asyncpg.connect(common.dsn("pgq"))
    qm = QueueManager(Queries(AsyncpgDriver(c)))

    @qm.entrypoint("turn")
    async def turn(job):
        c2 = await asyncpg.connect(common.dsn("pgq"))
        await c2.execute(
            "INSERT INTO turns (external_id) VALUES ($1)", orjson.loads(job.payload)["external_id"]
        )
        await c2.close()

    try:
        await asyncio.wait_for(
            qm.run(
                mode=QueueExecutionMode.drain, batch_size=1, heartbeat_timeout=timedelta(seconds=2)
            ),
            20,
        )
    except TimeoutError:
        print("pgqueuer: drain did not finish in 20 s")
    await c.close()
    print(f"pgqueuer: after a new worker re-picked the stale job: turns={await turns('pgq')}")
    c = await asyncpg.connect(common.dsn("pgq"))
    q = Queries(AsyncpgDriver(c))
    again = await q.enqueue("turn", pay, dedupe_key="m1", on_conflict="skip")
    await c.close()
    print(
        f"pgqueuer: redelivery of m1 after it finished -> {again} "
        f"({'accepted, new job' if again[0] is not None else 'refused'})"
    )


async def main():
    await ours()
    await proc()
    await pgq()
    await common.drop_dbs()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        asyncio.run(child(sys.argv[2]))
    else:
        asyncio.run(main())
