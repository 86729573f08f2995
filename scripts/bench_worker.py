#!/usr/bin/env python3
"""Benchmark workers end to end against the raw driver on the same server, same run.

    python scripts/bench_worker.py [--url mongodb://host/] [--jobs 300]

Prints the throughput of no-op jobs with 1, 2 and 4 `monq worker` processes and
their enqueue-to-start latency (p50, p99), beside a raw-driver baseline (insert,
claim, complete of the same number of documents) as ratios; and the cost of
process isolation: the same no-op jobs run inline versus in executor processes.
Without --url it starts an embedded SecantusDB on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pymongo
from bson import ObjectId
from pymongo import ReturnDocument

from monq.core.config import Config
from monq.core.embedded import server_for
from monq.core.store import Store, with_database
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue
from monq.worker.executor import ExecutorPool

NOOP = "monq.jobs.example.DummyJob"


def raw_rate(url: str, jobs: int) -> float:
    client: pymongo.MongoClient = pymongo.MongoClient(url)
    coll = client.get_default_database()["raw"]
    coll.create_index([("state", 1), ("priority", -1), ("_id", 1)])
    coll.insert_many([{"state": "pending", "priority": 0} for _ in range(jobs)])
    started = time.perf_counter()
    for _ in range(jobs):
        doc = coll.find_one_and_update({"state": "pending"}, {"$set": {"state": "running"}},
                                       sort=[("priority", -1), ("_id", 1)],
                                       return_document=ReturnDocument.AFTER)
        coll.update_one({"_id": doc["_id"]}, {"$set": {"state": "complete"}})
    rate = jobs / (time.perf_counter() - started)
    client.drop_database(client.get_default_database().name)
    client.close()
    return rate


async def enqueue(url: str, jobs: int) -> None:
    store = Store(url)
    await store.ensure_indexes()
    queue = Queue(store, Config(), author="bench")
    for i in range(0, jobs, 100):
        await queue.enqueue_many([EnqueueRequest(NOOP, {"steps": 1})
                                  for _ in range(min(100, jobs - i))])
    await store.close()


LATENCY_JOBS = 40


async def enqueue_spaced(url: str, jobs: int) -> None:
    from monq.queue.enqueue import Origin

    store = Store(url)
    queue = Queue(store, Config(), author="bench", origin=Origin(by="bench", origin="latency"))
    for _ in range(jobs):
        await queue.enqueue(NOOP, {"steps": 1})
        await asyncio.sleep(0.05)
    await store.close()


def run_workers(url: str, jobs: int, processes: int) -> tuple[float, float, float]:
    """Jobs per second with `processes` workers, and enqueue-to-start p50/p99 (ms)."""
    asyncio.run(enqueue(url, jobs))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONQ_")},
           "MONQ_MONGODB_URL": url, "MONQ_LOG_LEVEL": "WARNING",
           "MONQ_WORKER_CONCURRENCY": "2"}
    monq = str(Path(sys.executable).parent / "monq")
    client: pymongo.MongoClient = pymongo.MongoClient(url)
    db = client.get_default_database()
    workers = [subprocess.Popen([monq, "worker"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(processes)]
    try:
        while not db["sys.worker"].count_documents({"kind": "worker"}) >= processes:
            time.sleep(0.05)
        while db["sys.journal"].count_documents({}) < jobs:
            time.sleep(0.05)
        # read once the jobs are done: read before, the first claim may not exist yet
        first = db["sys.event"].find_one({"name": "request_start_job"}, sort=[("_id", 1)])
        last = max(d["finished_at"] for d in db["sys.journal"].find({}, {"finished_at": 1}))
        # latency on idle workers: jobs enqueued one at a time
        asyncio.run(enqueue_spaced(url, LATENCY_JOBS))
        while db["sys.journal"].count_documents({}) < jobs + LATENCY_JOBS:
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait()
    starts = {e["data"]["_id"]: e["created"] for e in db["sys.event"].find(
        {"name": "start_job"})}
    spaced = {e["data"]["_id"]: e["created"] for e in db["sys.event"].find(
        {"name": "enqueue_job", "data.origin": "latency"})}
    assert first is not None
    rate = jobs / max(0.001, (last - first["created"]).total_seconds())
    waits = sorted((starts[j] - at).total_seconds() * 1000 for j, at in spaced.items())
    client.drop_database(db.name)
    client.close()
    return rate, statistics.median(waits), waits[int(len(waits) * 0.99) - 1]


async def isolation(jobs: int) -> tuple[float, float]:
    """Seconds per no-op job inline and through an executor process."""
    from monq.jobs.example import DummyJob

    started = time.perf_counter()
    for _ in range(jobs):
        DummyJob(args={"steps": 1}).execute(steps=1)
    inline = (time.perf_counter() - started) / jobs
    pool = ExecutorPool(1)
    await pool.start()
    executor = await pool.acquire()

    async def started_cb() -> None:
        return None

    started = time.perf_counter()
    for _ in range(jobs):
        await executor.run({"id": ObjectId(), "number": 1, "name": NOOP, "args": {"steps": 1},
                            "attempt": 1}, lambda m: None, started_cb)
    isolated = (time.perf_counter() - started) / jobs
    pool.release(executor)
    await pool.close()
    return inline, isolated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MongoDB server URL (default: embedded SecantusDB)")
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    with server_for(args.url) as server:
        tag = uuid.uuid4().hex[:8]
        baseline = raw_rate(with_database(server, f"bench_raw_{tag}"), args.jobs)
        rows = [(n, *run_workers(with_database(server, f"bench_w{n}_{tag}"), args.jobs, n))
                for n in (1, 2, 4)]
    inline, isolated = asyncio.run(isolation(200))
    print(f"server: {server}   jobs: {args.jobs}   raw driver baseline: "
          f"{baseline:.0f} claim+complete/s")
    print(f"{'workers':>8}{'jobs/s':>10}{'ratio to raw':>14}{'start p50 ms':>14}"
          f"{'start p99 ms':>14}")
    for n, rate, p50, p99 in rows:
        print(f"{n:>8}{rate:>10.1f}{rate / baseline:>14.2f}{p50:>14.1f}{p99:>14.1f}")
    print(f"process isolation: {inline * 1e6:.0f} us per no-op job inline, "
          f"{isolated * 1e6:.0f} us in an executor process "
          f"(ratio {isolated / max(inline, 1e-9):.0f}x; reused, not spawned per job)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
