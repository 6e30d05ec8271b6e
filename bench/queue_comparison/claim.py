"""Claim-and-finish cost: a no-op turn, `concurrency` at once, N jobs preloaded over
`conversations` conversations; jobs/s to drain, plus per-conversation order checks.

usage: venv/bin/python claim.py {ours|proc|pgq} [--runs 3] [--n 10000] [--conversations 200]
       [--concurrency 32] [--poll SECONDS (procrastinate fetch_job_polling_interval)]
       [--turn-ms MS (how long the turn sleeps; 0 = yield once)]
ours: the project's worker loop (claim(limit=free) -> turn -> finish); in the product the
finish is folded into the turn's session save, so its statement here is an upper bound.
proc: procrastinate Worker, task lock = conversation.  pgq: QueueManager, drain mode
(pgqueuer has no per-key lock: order/overlap violations are counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict

import asyncpg
import orjson

from bench.queue_comparison import common


class Tracker:
    def __init__(self, n, turn_ms=0.0):
        self.n, self.done, self.turn_s = n, 0, turn_ms / 1000
        self.running = defaultdict(int)
        self.last = {}
        self.overlaps = self.out_of_order = 0
        self.all_done = asyncio.Event()

    async def turn(self, conv, n):
        self.running[conv] += 1
        if self.running[conv] > 1:
            self.overlaps += 1
        if self.last.get(conv, -1) > n:
            self.out_of_order += 1
        self.last[conv] = max(self.last.get(conv, -1), n)
        await asyncio.sleep(self.turn_s)  # the no-op turn (yields once when 0)
        self.running[conv] -= 1
        self.done += 1
        if self.done >= self.n:
            self.all_done.set()


async def preload(kind, msgs):
    if kind == "ours":
        from storage.base import InboxItem
        from storage.inbox import PostgresInbox

        pool = await asyncpg.create_pool(common.dsn("ours"), min_size=2, max_size=4)
        inbox = PostgresInbox(pool)
        for m in msgs:  # one by one keeps seq order = n order
            await inbox.put(
                InboxItem(
                    "default",
                    "whatsapp",
                    m["external_id"],
                    m["conversation"],
                    m["received_at"],
                    {**m["message"], "n": m["n"]},
                )
            )
        await inbox.close()
        await pool.close()
    elif kind == "proc":
        app = common.proc_app()
        async with app.open_async():
            task = app.tasks["turn"]
            for i in range(0, len(msgs), 500):
                chunk = msgs[i : i + 500]
                await task.batch_defer_async(
                    *[{"conversation": m["conversation"], "n": m["n"]} for m in chunk]
                )
            # batch_defer can't set a per-job lock; set lock = conversation afterwards
            c = await asyncpg.connect(common.dsn("proc"))
            await c.execute("UPDATE procrastinate_jobs SET lock = args->>'conversation'")
            await c.close()
    elif kind == "pgq":
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        c = await asyncpg.connect(common.dsn("pgq"))
        q = Queries(AsyncpgDriver(c))
        for i in range(0, len(msgs), 500):
            chunk = msgs[i : i + 500]
            await q.enqueue(
                ["turn"] * len(chunk),
                [orjson.dumps({"conversation": m["conversation"], "n": m["n"]}) for m in chunk],
                [0] * len(chunk),
                dedupe_key=[m["external_id"] for m in chunk],
            )
        await c.close()


async def drain(kind, tr: Tracker, concurrency, poll):
    if kind == "ours":
        from storage.inbox import PostgresInbox

        pool = await asyncpg.create_pool(
            common.dsn("ours"), min_size=common.POOL_SIZE, max_size=common.POOL_SIZE
        )
        inbox = PostgresInbox(pool)
        running: set = set()
        wake = asyncio.Event()

        async def run(claim):
            msg = claim.message
            if isinstance(msg, str):
                msg = orjson.loads(msg)
            await tr.turn(claim.conversation, msg["n"])
            await inbox.finish(claim, status="done")

        def freed(t):
            running.discard(t)
            wake.set()

        t0 = time.perf_counter()
        while not tr.all_done.is_set():
            wake.clear()
            free = concurrency - len(running)
            claims = await inbox.claim(limit=free, lease=60) if free > 0 else []
            for c in claims:
                t = asyncio.create_task(run(c))
                running.add(t)
                t.add_done_callback(freed)
            if not claims or len(claims) == free:
                try:
                    await asyncio.wait_for(wake.wait(), 0.2)
                except TimeoutError:
                    pass
        elapsed = time.perf_counter() - t0
        await asyncio.gather(*running)
        await inbox.close()
        await pool.close()
        return elapsed
    if kind == "proc":
        common.HOOK = tr.turn
        app = common.proc_app()
        from procrastinate import worker as pw

        async with app.open_async():
            w = pw.Worker(
                app,
                queues=["inbox"],
                concurrency=concurrency,
                wait=True,
                fetch_job_polling_interval=poll,
                install_signal_handlers=False,
            )
            t0 = time.perf_counter()
            wt = asyncio.create_task(w.run())
            await tr.all_done.wait()
            elapsed = time.perf_counter() - t0
            w.stop()
            await wt
        return elapsed
    if kind == "pgq":
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries
        from pgqueuer.types import QueueExecutionMode

        c = await asyncpg.connect(common.dsn("pgq"))
        qm = QueueManager(Queries(AsyncpgDriver(c)))

        @qm.entrypoint("turn")
        async def turn(job):
            p = orjson.loads(job.payload)
            await tr.turn(p["conversation"], p["n"])

        t0 = time.perf_counter()
        await qm.run(mode=QueueExecutionMode.drain, batch_size=10, max_concurrent_tasks=concurrency)
        elapsed = time.perf_counter() - t0
        await c.close()
        return elapsed


async def one_run(kind, run, n, conversations, concurrency, poll, turn_ms):
    await common.recreate_db(kind)
    msgs = list(common.messages(n, run=run, conversations=conversations))
    await preload(kind, msgs)
    tr = Tracker(n, turn_ms)
    elapsed = await drain(kind, tr, concurrency, poll)
    return {
        "jobs_s": n / elapsed,
        "elapsed_s": elapsed,
        "done": tr.done,
        "overlaps": tr.overlaps,
        "out_of_order": tr.out_of_order,
    }


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["ours", "proc", "pgq"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--conversations", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--poll", type=float, default=5.0)
    ap.add_argument("--turn-ms", type=float, default=0.0)
    a = ap.parse_args()
    runs = []
    for r in range(a.runs):
        res = await one_run(a.kind, r, a.n, a.conversations, a.concurrency, a.poll, a.turn_ms)
        print(json.dumps({"run": r, **{k: round(v, 3) for k, v in res.items()}}), flush=True)
        runs.append(res)
    print(
        json.dumps(
            {
                "kind": a.kind,
                "args": vars(a),
                "median_of_runs": {k: round(common.med([x[k] for x in runs]), 3) for k in runs[0]},
            }
        )
    )
    await common.drop_dbs()


if __name__ == "__main__":
    asyncio.run(main())
