#!/usr/bin/env python3
"""Benchmark the summarizer and the history routes, against baselines in the same run.

    python scripts/bench_history.py [--url URL] [--jobs 1000,100000] [--history-docs 1000000]

Prints the summarizer's tick time with each number of jobs in the queue (it should
stay flat: a tick reads only the events since the last one) beside the naive
baseline, a full $group aggregation of sys.queue, which grows with the queue; and
the latency (p50, p99) of GET /api/v1/jobs/history pages over the given number of
history documents beside the bare indexed query for the same page.
Without --url it starts an embedded SecantusDB on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from tornado.httpclient import AsyncHTTPClient

from monq.api.server import ApiServer
from monq.core.config import Config
from monq.core.embedded import server_for
from monq.core.store import Store, layout, with_database
from monq.history.daemon import Summarizer
from monq.queue.queue import Queue

NAME = "monq.jobs.example.DummyJob"
TICKS = 20
PAGES = 50


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


async def seed_queue(store: Store, jobs: int) -> None:
    now = datetime.now(UTC)
    coll = store.collection(layout.QUEUE)
    for first in range(0, jobs, 10_000):
        await coll.insert_many([{
            "_id": ObjectId(), "number": n + 1, "name": f"{NAME}{n % 20}", "args": {},
            "state": "pending" if n % 3 else "running", "priority": 0, "attempts": 1,
            "attempts_left": 1, "enqueued": {"at": now}, "query_at": now, "held": False,
            "blocked": False, "pool": "default", "tags": [], "outbox": []}
            for n in range(first, min(first + 10_000, jobs))])
    await store.collection(layout.COUNTER).update_one(
        {"_id": "job_number"}, {"$set": {"n": jobs}}, upsert=True)


async def tick_times(url: str, jobs: int) -> tuple[float, float]:
    store = Store(url, timeout_s=30)
    await store.ensure_indexes()
    await seed_queue(store, jobs)
    config = Config()
    summarizer = Summarizer(store, config, holder="bench")
    await summarizer.tick()  # takeover: one full read
    queue = Queue(store, config, author="bench")
    ticks = []
    for _ in range(TICKS):
        await queue.enqueue(NAME)  # a change every tick
        started = time.perf_counter()
        summarizer.reconciled_at = time.monotonic()  # measure the steady tick
        await summarizer.tick()
        ticks.append(time.perf_counter() - started)
    started = time.perf_counter()
    cursor = await store.collection(layout.QUEUE).aggregate(
        [{"$group": {"_id": {"name": "$name", "state": "$state"}, "n": {"$sum": 1}}}])
    await cursor.to_list(None)
    naive = time.perf_counter() - started
    await store.drop_database()
    await store.close()
    return statistics.median(ticks), naive


async def page_latency(url: str, docs: int) -> dict[str, float]:
    store = Store(url, timeout_s=60)
    await store.ensure_indexes()
    coll = store.collection(layout.HISTORY)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(0, docs, 10_000):
        await coll.insert_many([{"resolution": "second",
                                 "created": start + timedelta(seconds=i), "pending": i % 50,
                                 "total": i % 50, "jobs": []}
                                for i in range(first, min(first + 10_000, docs))])
    config = Config().with_values(api={"port": 0, "admin_password": "bench-password"},
                                  paths={"var": tempfile.mkdtemp(prefix="monq-bench-")})
    server = ApiServer(config, store, out=io.StringIO())
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    await server.started.wait()
    http = AsyncHTTPClient(force_instance=True)
    base = f"http://127.0.0.1:{server.port}/api/v1"
    login = await http.fetch(base + "/login", method="POST", headers={
        "Content-Type": "application/json"}, body=json.dumps(
        {"username": "admin", "password": "bench-password"}))
    token = json.loads(login.body)["data"]["token"]
    api, bare = [], []
    for i in range(PAGES):
        page = (i * 7919) % max(1, docs // 25)
        started = time.perf_counter()
        await http.fetch(f"{base}/jobs/history?resolution=second&per_page=25&page={page}",
                         headers={"Authorization": f"Bearer {token}"})
        api.append(time.perf_counter() - started)
        started = time.perf_counter()
        await coll.find({"resolution": "second"}).sort("created", -1).skip(page * 25
                                                                          ).limit(25).to_list(None)
        bare.append(time.perf_counter() - started)
    http.close()
    stop.set()
    await task
    await store.drop_database()
    await store.close()
    return {"api50": pct(api, 0.5), "api99": pct(api, 0.99), "bare50": pct(bare, 0.5),
            "bare99": pct(bare, 0.99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MongoDB server URL (default: embedded SecantusDB)")
    parser.add_argument("--jobs", default="1000,100000")
    parser.add_argument("--history-docs", type=int, default=1_000_000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.jobs.split(",")]
    with server_for(args.url) as server:
        rows: list[tuple[int, float, float]] = []
        for size in sizes:
            url = with_database(server, f"bench_hist_{uuid.uuid4().hex[:8]}")
            rows.append((size, *asyncio.run(tick_times(url, size))))
        pages: dict[str, Any] = asyncio.run(page_latency(
            with_database(server, f"bench_pages_{uuid.uuid4().hex[:8]}"), args.history_docs))
    print(f"server: {server}")
    print(f"{'jobs queued':>12}{'tick ms':>10}{'full $group ms':>16}{'ratio':>8}")
    for size, tick, naive in rows:
        print(f"{size:>12}{tick * 1000:>10.1f}{naive * 1000:>16.1f}{tick / naive:>8.3f}")
    print(f"/jobs/history over {args.history_docs} documents, 25 a page: "
          f"p50 {pages['api50'] * 1000:.1f} ms, p99 {pages['api99'] * 1000:.1f} ms; "
          f"bare indexed query p50 {pages['bare50'] * 1000:.1f} ms, "
          f"p99 {pages['bare99'] * 1000:.1f} ms; ratio p50 "
          f"{pages['api50'] / pages['bare50']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
