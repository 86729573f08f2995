#!/usr/bin/env python3
"""Benchmark the queue against the raw driver on the same server, in the same run.

    python scripts/bench_queue.py [--url mongodb://host/] [--jobs 300] [--lives 5] [--json]

Without --url it starts a fresh embedded SecantusDB on a free port. Measures, each
beside a raw-driver baseline on the same server in the same run:

- enqueue one by one (`Queue.enqueue`, lazily as the API, the CLI, the scheduler and
  `SyncQueue` enqueue: the job, then its event) against a bare ``insert_one`` per job;
- enqueue in batches of 100 (`Queue.enqueue_many`) against a bare ``insert_many``;
- the claim, start and complete of a job through the `Queue` API against a bare
  claim (``find_one_and_update``) and complete (``update_one``);
- the MongoDB commands of one no-op job's whole life, enqueue to journal, with
  nothing else queued: a real worker (the daemon `monq worker` runs, in this
  process, so that one pymongo command listener sees every client involved: the
  enqueuing one and the worker's) runs `monq.jobs.bench.NoopJob`; the median over
  ``--lives`` jobs run one after another. Whatever the idle worker sends meanwhile
  counts too. ``round_trips_job_life`` counts every command except the ``getMore``
  calls on the worker's change stream, which ``getmores_job_life`` counts apart: on
  MongoDB such a ``getMore`` waits on the server until a change the stream lets
  through (or its ``maxAwaitTimeMS``), so it is not a round trip the job causes; the
  embedded server answers a waiting one on any write anywhere, so there it follows
  the job's own writes one for one. The by-command breakdown keeps them all.

A second baseline for the enqueues: the same bare ``insert_one`` and ``insert_many``
of the documents monq enqueues (built beforehand), into sys.queue with its indexes.
On the embedded server each index costs an insert about 0.1 ms whether a document
is in it or not (sparse and partial ones too), so with sys.queue's 12 the bare
insert of a monq job costs about twice the one-index insert of a small document;
``enqueue_ratio_to_raw_queue`` and ``enqueue_batch_ratio_to_raw_queue`` show what
monq adds to that (its event, the job number, the checks). The same pair also
enqueues from 20 callers at once, one by one each (as an API server's requests,
each with its own `Queue` on the process's one store), beside 20 callers inserting
the documents bare: ``enqueue_concurrent_ratio_to_raw_queue``.

``--json`` prints one JSON object: ``round_trips_job_life``, ``getmores_job_life``,
``enqueue_ratio``, ``enqueue_batch_ratio``, ``cycle_ratio`` (monq / raw; above 1 is
faster than the bare driver), ``enqueue_ratio_to_raw_queue``,
``enqueue_batch_ratio_to_raw_queue``, ``enqueue_concurrent_ratio_to_raw_queue``,
and the rates behind them; the table goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient, ReturnDocument, monitoring

from monq.core.command_count import CommandCounter
from monq.core.config import Config
from monq.core.embedded import server_for
from monq.core.store import Store, layout, with_database
from monq.queue.enqueue import EnqueueRequest, Origin, build_document
from monq.queue.queue import Queue, WorkerRef

NOOP = "monq.jobs.bench.NoopJob"
BATCH = 100
CALLERS = 20  # concurrent enqueuers, as an API server's requests


class ChangeStreamGetMores(monitoring.CommandListener):
    """Counts the ``getMore`` calls on change-stream cursors: it learns their ids
    from the replies to ``aggregate`` commands that open with ``$changeStream``."""

    def __init__(self) -> None:
        self.count = 0
        self._opening: set[int] = set()  # request ids of change-stream aggregates
        self._cursors: set[int] = set()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        with self._lock:
            if event.command_name == "aggregate":
                pipeline = command.get("pipeline") or [{}]
                if "$changeStream" in pipeline[0]:
                    self._opening.add(event.request_id)
            elif event.command_name == "getMore" and command.get("getMore") in self._cursors:
                self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            if event.request_id in self._opening:
                self._opening.discard(event.request_id)
                self._cursors.add(event.reply.get("cursor", {}).get("id"))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self._opening.discard(event.request_id)


async def raw_baseline(url: str, jobs: int) -> dict[str, float]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    coll = client.get_default_database()["raw"]
    await coll.create_index([("state", 1), ("priority", -1), ("_id", 1)])
    started = time.perf_counter()
    for i in range(jobs):
        await coll.insert_one({"state": "pending", "priority": 0, "n": i})
    enqueue_s = time.perf_counter() - started
    batches = max(1, jobs // BATCH)
    started = time.perf_counter()
    for _ in range(batches):
        await coll.insert_many([{"state": "pending", "priority": 0} for _ in range(BATCH)])
    batch_s = time.perf_counter() - started
    await coll.delete_many({})
    await coll.insert_many([{"state": "pending", "priority": 0, "n": i} for i in range(jobs)])
    started = time.perf_counter()
    for _ in range(jobs):
        doc = await coll.find_one_and_update(
            {"state": "pending"}, {"$set": {"state": "running"}},
            sort=[("priority", -1), ("_id", 1)], return_document=ReturnDocument.AFTER)
        assert doc is not None
        await coll.update_one({"_id": doc["_id"]}, {"$set": {"state": "complete"}})
    cycle_s = time.perf_counter() - started
    await client.drop_database(client.get_default_database().name)
    await client.close()
    return {"enqueue_per_s": jobs / enqueue_s, "batch_per_s": batches * BATCH / batch_s,
            "cycle_per_s": jobs / cycle_s}


async def raw_queue_inserts(url: str, jobs: int) -> dict[str, float]:
    """The bare inserts again, of the documents monq enqueues (built as `enqueue`
    builds them, outside the timing) into sys.queue with its indexes: what the server
    charges for monq's documents and indexes, apart from monq's own work."""
    store = Store(url, timeout_s=10)
    await store.ensure_indexes()
    queue = store.collection(layout.QUEUE)
    now = datetime.now(UTC)
    docs = [build_document(EnqueueRequest(NOOP), i + 1, Origin(by="bench"), now)
            for i in range(jobs * 2)]
    started = time.perf_counter()
    for doc in docs[:jobs]:
        await queue.insert_one(doc)
    enqueue_s = time.perf_counter() - started
    batches = max(1, jobs // BATCH)
    started = time.perf_counter()
    for i in range(batches):
        await queue.insert_many(docs[jobs + i * BATCH:jobs + (i + 1) * BATCH])
    batch_s = time.perf_counter() - started
    await queue.delete_many({})
    more = iter([{**doc, "_id": ObjectId()} for doc in docs[:jobs]])

    async def caller() -> None:
        for doc in more:
            await queue.insert_one(doc)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    concurrent_s = time.perf_counter() - started
    await store.drop_database()
    await store.close()
    return {"enqueue_per_s": jobs / enqueue_s, "batch_per_s": batches * BATCH / batch_s,
            "concurrent_per_s": jobs / concurrent_s}


async def monq_rates(url: str, jobs: int) -> dict[str, float]:
    store = Store(url, timeout_s=10)
    await store.ensure_indexes()
    # the enqueue of the API, the CLI, the scheduler and SyncQueue (lazy_enqueue)
    queue = Queue(store, Config(), author="bench", lazy_enqueue=True)
    worker = WorkerRef("bench", "host", 1)
    started = time.perf_counter()
    for _ in range(jobs):
        await queue.enqueue(NOOP)
    enqueue_s = time.perf_counter() - started
    batches = max(1, jobs // BATCH)
    started = time.perf_counter()
    for _ in range(batches):
        await queue.enqueue_many([EnqueueRequest(NOOP) for _ in range(BATCH)])
    batch_s = time.perf_counter() - started
    left = iter(range(jobs))

    async def caller(i: int) -> None:
        for _ in left:  # a Queue a request, on the process's one store, as the API
            await Queue(store, Config(), author=f"bench{i}", lazy_enqueue=True).enqueue(NOOP)

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    concurrent_s = time.perf_counter() - started
    await store.drop_database()
    await store.ensure_indexes()
    await queue.enqueue_many([EnqueueRequest(NOOP) for _ in range(jobs)])
    started = time.perf_counter()
    for _ in range(jobs):
        claim = await queue.claim(worker)
        assert claim is not None
        await queue.start(claim.job.id, claim.token)
        await queue.complete(claim.job.id, claim.token)
    cycle_s = time.perf_counter() - started
    await store.drop_database()
    await store.close()
    return {"enqueue_per_s": jobs / enqueue_s, "batch_per_s": batches * BATCH / batch_s,
            "concurrent_per_s": jobs / concurrent_s, "cycle_per_s": jobs / cycle_s}


async def job_lives(url: str, lives: int) -> list[tuple[int, int, dict[str, int]]]:
    """Per job life (enqueue to journal) through a real worker, one job at a time: the
    commands other than the change stream's getMores, those getMores, and all of
    them by name; sorted by the first."""
    from monq.worker.daemon import Worker

    counter = CommandCounter()
    getmores = ChangeStreamGetMores()
    config = Config().with_values(mongodb={"url": url})
    worker_store = Store(url, timeout_s=10, event_listeners=[counter, getmores])
    await worker_store.ensure_indexes()
    store = Store(url, timeout_s=10, event_listeners=[counter, getmores])
    queue = Queue(store, config, author="bench", lazy_enqueue=True)  # as the API enqueues
    # the watcher's client is not counted: it only waits for the journal
    watcher: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    db = watcher.get_default_database()
    stop = asyncio.Event()
    worker = Worker(worker_store, config, concurrency=2)
    running = asyncio.create_task(worker.run(stop))
    counts: list[tuple[int, int, dict[str, int]]] = []
    try:
        deadline = time.monotonic() + 60
        while not await db["sys.worker"].count_documents({}):
            if running.done() or time.monotonic() > deadline:
                raise SystemExit("the worker did not start")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # past its start-up commands: idle, as a waiting worker is
        for _ in range(lives):
            counter.reset()
            getmores.reset()
            job = await queue.enqueue(NOOP)
            deadline = time.monotonic() + 60
            while not await db["sys.journal"].find_one({"_id": job.id}, {"_id": 1}):
                if time.monotonic() > deadline:
                    raise SystemExit(f"job #{job.number} did not reach the journal")
                await asyncio.sleep(0.005)
            stream = getmores.count
            counts.append((counter.total - stream, stream, dict(counter.by_name)))
            await asyncio.sleep(0.2)  # the next job starts on an idle worker again
    finally:
        stop.set()
        await running
        await watcher.drop_database(db.name)
        await watcher.close()
        await store.close()
        await worker_store.close()
    counts.sort(key=lambda c: c[0])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MongoDB server URL (default: a fresh embedded SecantusDB)")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--lives", type=int, default=5,
                        help="single jobs run one after another for the round trip count")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with server_for(args.url) as server_url:
        tag = uuid.uuid4().hex[:8]
        raw = asyncio.run(raw_baseline(with_database(server_url, f"bench_raw_{tag}"),
                                       args.jobs))
        on_queue = asyncio.run(raw_queue_inserts(
            with_database(server_url, f"bench_rawq_{tag}"), args.jobs))
        ours = asyncio.run(monq_rates(with_database(server_url, f"bench_monq_{tag}"),
                                      args.jobs))
        counts = asyncio.run(job_lives(with_database(server_url, f"bench_life_{tag}"),
                                       args.lives))
    lives = [c[0] for c in counts]
    life = statistics.median(lives)
    stream = statistics.median(c[1] for c in counts)
    by_name = counts[len(counts) // 2][2]
    result = {
        "round_trips_job_life": life, "getmores_job_life": stream,
        "enqueue_ratio": round(ours["enqueue_per_s"] / raw["enqueue_per_s"], 3),
        "enqueue_batch_ratio": round(ours["batch_per_s"] / raw["batch_per_s"], 3),
        "cycle_ratio": round(ours["cycle_per_s"] / raw["cycle_per_s"], 3),
        "enqueue_ratio_to_raw_queue": round(ours["enqueue_per_s"]
                                            / on_queue["enqueue_per_s"], 3),
        "enqueue_batch_ratio_to_raw_queue": round(ours["batch_per_s"]
                                                  / on_queue["batch_per_s"], 3),
        "enqueue_concurrent_ratio_to_raw_queue": round(ours["concurrent_per_s"]
                                                       / on_queue["concurrent_per_s"], 3),
        "raw_queue": {k: round(v, 1) for k, v in on_queue.items()},
        "monq": {k: round(v, 1) for k, v in ours.items()},
        "raw": {k: round(v, 1) for k, v in raw.items()},
        "job_life_commands": lives, "job_life_getmores": [c[1] for c in counts],
        "job_life_by_command": by_name,
    }
    out = sys.stderr if args.json else sys.stdout
    print(f"server: {server_url}   jobs: {args.jobs}", file=out)
    print(f"{'measure':<36}{'monq':>10}{'raw driver':>12}{'ratio':>8}", file=out)
    for label, key in (("enqueue one by one (jobs/s)", "enqueue_per_s"),
                       (f"enqueue in batches of {BATCH} (jobs/s)", "batch_per_s"),
                       ("claim+start+complete (jobs/s)", "cycle_per_s")):
        print(f"{label:<36}{ours[key]:>10.1f}{raw[key]:>12.1f}{ours[key] / raw[key]:>8.2f}",
              file=out)
    print(f"{'  the same, bare, of monq documents into sys.queue':<36}", file=out)
    for label, key in (("  one by one (jobs/s)", "enqueue_per_s"),
                       (f"  in batches of {BATCH} (jobs/s)", "batch_per_s"),
                       (f"  by {CALLERS} callers at once (jobs/s)", "concurrent_per_s")):
        print(f"{label:<36}{ours[key]:>10.1f}{on_queue[key]:>12.1f}"
              f"{ours[key] / on_queue[key]:>8.2f}", file=out)
    print(f"round trips per no-op job life, enqueue to journal, change-stream getMores "
          f"apart (median of {len(lives)}): {life:g}  {lives}", file=out)
    print(f"  and change-stream getMores (median): {stream:g}  {[c[1] for c in counts]}",
          file=out)
    print("  the median life by command, getMores included: " + ", ".join(
        f"{name} {n}" for name, n in sorted(by_name.items(), key=lambda kv: -kv[1])), file=out)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
