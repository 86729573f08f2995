#!/usr/bin/env python3
"""Benchmark the queue against the raw driver on the same server, in the same run.

    python scripts/bench_queue.py [--url mongodb://host/db] [--jobs 300]

Without --url it starts an embedded SecantusDB on a free port. Prints the enqueue
rate (one by one and batched), the claim-start-complete rate and MongoDB round
trips per job life (counted with pymongo's command monitoring), each beside a
raw-driver baseline that does only the minimal insert, claim and complete, as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

from pymongo import AsyncMongoClient, ReturnDocument, monitoring

from monq.core.config import Config
from monq.core.embedded import server_for
from monq.core.store import Store, with_database
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue, WorkerRef

NAME = "monq.jobs.example.DummyJob"


class Counter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in ("hello", "isMaster", "ping", "endSessions"):
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def raw_baseline(url: str, jobs: int, counter: Counter) -> dict[str, float]:
    client: AsyncMongoClient = AsyncMongoClient(url, event_listeners=[counter])
    coll = client.get_default_database()["raw"]
    await coll.create_index([("state", 1), ("priority", -1), ("_id", 1)])
    started = time.perf_counter()
    for i in range(jobs):
        await coll.insert_one({"state": "pending", "priority": 0, "n": i})
    enqueue_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(jobs // 100):
        await coll.insert_many([{"state": "pending", "priority": 0} for _ in range(100)])
    batch_s = time.perf_counter() - started
    await coll.delete_many({})
    for i in range(jobs):
        await coll.insert_one({"state": "pending", "priority": 0, "n": i})
    counter.count = 0
    started = time.perf_counter()
    for _ in range(jobs):
        doc = await coll.find_one_and_update(
            {"state": "pending"}, {"$set": {"state": "running"}},
            sort=[("priority", -1), ("_id", 1)], return_document=ReturnDocument.AFTER)
        await coll.update_one({"_id": doc["_id"]}, {"$set": {"state": "complete"}})
    run_s = time.perf_counter() - started
    run_trips = counter.count / jobs
    counter.count = 0
    await coll.insert_one({"state": "pending", "priority": 0})
    doc = await coll.find_one_and_update({"state": "pending"}, {"$set": {"state": "running"}},
                                         sort=[("priority", -1), ("_id", 1)])
    await coll.update_one({"_id": doc["_id"]}, {"$set": {"state": "complete"}})
    life_trips = counter.count
    await client.drop_database(client.get_default_database().name)
    await client.close()
    return {"enqueue": jobs / enqueue_s, "batch": (jobs // 100 * 100) / batch_s,
            "run": jobs / run_s, "run_trips": run_trips, "life_trips": life_trips}


async def monq_queue(url: str, jobs: int, counter: Counter) -> dict[str, float]:
    store = Store(url, timeout_s=10, event_listeners=[counter])
    await store.ensure_indexes()
    queue = Queue(store, Config(), author="bench")
    worker = WorkerRef("bench", "host", 1)
    started = time.perf_counter()
    for _ in range(jobs):
        await queue.enqueue(NAME)
    enqueue_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(jobs // 100):
        await queue.enqueue_many([EnqueueRequest(NAME) for _ in range(100)])
    batch_s = time.perf_counter() - started
    await store.drop_database()
    await store.ensure_indexes()
    for _ in range(jobs):
        await queue.enqueue(NAME)
    counter.count = 0
    started = time.perf_counter()
    for _ in range(jobs):
        claim = await queue.claim(worker)
        assert claim is not None
        await queue.start(claim.job.id, claim.token)
        await queue.complete(claim.job.id, claim.token)
    run_s = time.perf_counter() - started
    run_trips = counter.count / jobs
    counter.count = 0
    job = await queue.enqueue(NAME)
    claim = await queue.claim(worker)
    assert claim is not None and claim.job.id == job.id
    await queue.start(job.id, claim.token)
    await queue.complete(job.id, claim.token)
    life_trips = counter.count
    await store.drop_database()
    await store.close()
    return {"enqueue": jobs / enqueue_s, "batch": (jobs // 100 * 100) / batch_s,
            "run": jobs / run_s, "run_trips": run_trips, "life_trips": life_trips}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MongoDB server URL (default: embedded SecantusDB)")
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    with server_for(args.url) as server_url:
        suffix = uuid.uuid4().hex[:8]
        counter = Counter()
        raw = asyncio.run(raw_baseline(with_database(server_url, f"bench_raw_{suffix}"),
                                       args.jobs, counter))
        ours = asyncio.run(monq_queue(with_database(server_url, f"bench_monq_{suffix}"),
                                      args.jobs, counter))
    print(f"server: {server_url}   jobs: {args.jobs}")
    print(f"{'measure':<34}{'monq':>12}{'raw driver':>14}{'ratio':>9}")
    rows = [("enqueue one by one (jobs/s)", "enqueue"), ("enqueue in batches of 100 (jobs/s)",
            "batch"), ("claim+start+complete (jobs/s)", "run"),
            ("round trips per claim..complete", "run_trips"),
            ("round trips per job life", "life_trips")]
    for label, key in rows:
        print(f"{label:<34}{ours[key]:>12.1f}{raw[key]:>14.1f}{ours[key] / raw[key]:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
