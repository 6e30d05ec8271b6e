"""Enqueue cost: ours (PostgresInbox.put) vs procrastinate defer_async vs pgqueuer enqueue.

usage: venv/bin/python enqueue.py {ours|proc|pgq} [--runs 3] [--seq 2000] [--conc 32] [--n 10000]
Each run: fresh database; phase 1 one caller (per-message latency), phase 2 `conc`
concurrent callers (webhooks) sharing one pool of 10 connections (messages/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import asyncpg
import orjson

from bench.queue_comparison import common


async def make(kind: str):
    """-> (enqueue(msg) coroutine function returning an id or None for a duplicate, close)."""
    if kind == "ours":
        from storage.base import InboxItem
        from storage.inbox import PostgresInbox

        pool = await asyncpg.create_pool(
            common.dsn("ours"), min_size=common.POOL_SIZE, max_size=common.POOL_SIZE
        )
        inbox = PostgresInbox(pool)

        async def put(m):
            return await inbox.put(
                InboxItem(
                    bot_id="default",
                    channel="whatsapp",
                    external_id=m["external_id"],
                    conversation=m["conversation"],
                    received_at=m["received_at"],
                    message=m["message"],
                )
            )

        async def close():
            await inbox.close()
            await pool.close()

        return put, close
    if kind == "proc":
        import procrastinate

        app = common.proc_app()
        await app.open_async()
        task = app.tasks["turn"]

        async def put(m):
            try:
                return await task.configure(
                    lock=m["conversation"], queueing_lock=m["external_id"]
                ).defer_async(
                    message=m["message"],
                    conversation=m["conversation"],
                    external_id=m["external_id"],
                    n=m["n"],
                )
            except procrastinate.exceptions.AlreadyEnqueued:
                return None

        async def close():
            await app.close_async()

        return put, close
    if kind == "pgq":
        from pgqueuer.db import AsyncpgPoolDriver
        from pgqueuer.queries import Queries

        pool = await asyncpg.create_pool(
            common.dsn("pgq"), min_size=common.POOL_SIZE, max_size=common.POOL_SIZE
        )
        q = Queries(AsyncpgPoolDriver(pool))

        async def put(m):
            payload = orjson.dumps(
                {
                    "message": m["message"],
                    "conversation": m["conversation"],
                    "external_id": m["external_id"],
                    "n": m["n"],
                }
            )
            ids = await q.enqueue("turn", payload, dedupe_key=m["external_id"], on_conflict="skip")
            return ids[0]

        async def close():
            await pool.close()

        return put, close
    raise SystemExit(kind)


async def one_run(kind: str, run: int, n_seq: int, conc: int, n: int) -> dict:
    await common.recreate_db(kind)
    put, close = await make(kind)
    try:
        # warm-up (connections, prepared statements)
        for m in common.messages(200, run=1000 + run):
            await put(m)
        lat = []
        t0 = time.perf_counter()
        for m in common.messages(n_seq, run=2000 + run):
            s = time.perf_counter()
            assert await put(m) is not None
            lat.append(time.perf_counter() - s)
        seq_s = time.perf_counter() - t0
        # concurrent
        msgs = list(common.messages(n, run=3000 + run))
        it = iter(msgs)
        clat = []

        async def caller():
            for m in it:
                s = time.perf_counter()
                assert await put(m) is not None
                clat.append(time.perf_counter() - s)

        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(conc)))
        conc_s = time.perf_counter() - t0
        # a redelivery of a still-queued message is a duplicate for all three
        dup_pending = await put(msgs[0])
    finally:
        await close()
    return {
        "seq_median_ms": common.med(lat) * 1e3,
        "seq_p99_ms": common.pct(lat, 99) * 1e3,
        "seq_msgs_s": n_seq / seq_s,
        "conc_msgs_s": n / conc_s,
        "conc_median_ms": common.med(clat) * 1e3,
        "conc_p99_ms": common.pct(clat, 99) * 1e3,
        "dup_of_queued_refused": dup_pending is None,
    }


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["ours", "proc", "pgq"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seq", type=int, default=2000)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--n", type=int, default=10000)
    a = ap.parse_args()
    runs = []
    for r in range(a.runs):
        res = await one_run(a.kind, r, a.seq, a.conc, a.n)
        print(
            json.dumps(
                {
                    "run": r,
                    **{k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()},
                }
            ),
            flush=True,
        )
        runs.append(res)
    summary = {
        k: round(common.med([x[k] for x in runs]), 3)
        for k in runs[0]
        if isinstance(runs[0][k], float)
    }
    print(json.dumps({"kind": a.kind, "median_of_runs": summary}))
    await common.drop_dbs()


if __name__ == "__main__":
    asyncio.run(main())
