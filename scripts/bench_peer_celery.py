#!/usr/bin/env python3
"""Benchmark monq against peer queues on the same machine: Celery with Redis, and
(when installed) mongo-taskqueue on the same MongoDB server as monq.

    python -m venv /tmp/peer
    /tmp/peer/bin/pip install -e '.[embedded]' 'celery[redis]' mongo-taskqueue
    /tmp/peer/bin/python scripts/bench_peer_celery.py [--jobs 500] [--concurrency 2]

Celery is not a dependency of monq: run this from a separate virtualenv that holds
both. Needs ``redis-server`` on the PATH (or ``--redis URL``); without ``--url`` it
starts an embedded SecantusDB. The same workload runs through both: ``--jobs`` no-op
jobs enqueued one by one (the enqueue rate), then one worker process with
``--concurrency`` slots started to drain them (jobs/s from the first job's start to the
last one's end), then ``LATENCY_JOBS`` jobs enqueued 50 ms apart to the idle worker
(enqueue-to-start latency, p50 and p99).

Celery runs with its defaults (prefork pool, acknowledgement on receipt, prefetch 4,
no result backend); monq with its own (a MongoDB write and an event per state change,
jobs in reused executor processes). The task of each records its start and end times
(Celery in Redis, monq in its events and journal); no figure is taken from a log.

mongo-taskqueue is a library with no worker daemon: the script runs ``--concurrency``
consumer processes that lease a task, run the no-op, mark it done, and poll every
50 ms when idle (monq's ``worker.poll_min_s``). It keeps one document per task and
no events; it is left out when ``mongotq`` is not importable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import redis
    from celery import Celery
except ImportError:  # the --help of a venv without the peer still works
    Celery = None  # type: ignore[assignment,misc]
try:
    from mongotq import TaskQueue
except ImportError:  # the MongoDB-backed peer is optional
    TaskQueue = None  # type: ignore[assignment,misc]

LATENCY_JOBS = 30
NOOP = "monq.jobs.example.DummyJob"
REDIS_URL_ENV = "BENCH_PEER_REDIS_URL"
KEY = "bench_peer"


def make_celery(url: str) -> Any:
    app = Celery("bench_peer_celery", broker=url)
    app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                    broker_connection_retry_on_startup=True, task_default_queue=KEY)
    client: list[Any] = []

    @app.task(name="bench_peer.noop")
    def noop(sent: float | None = None) -> None:
        started = time.time()
        if not client:
            client.append(redis.Redis.from_url(url))
        pipe = client[0].pipeline()
        pipe.setnx(f"{KEY}:first", started)
        if sent is not None:
            pipe.rpush(f"{KEY}:latency", started - sent)
        pipe.set(f"{KEY}:last", time.time())
        pipe.incr(f"{KEY}:done")
        pipe.execute()

    return app


# the worker process imports this module and finds the app here
app = make_celery(os.environ[REDIS_URL_ENV]) if Celery and os.environ.get(REDIS_URL_ENV) \
    else None


def free_port() -> int:
    from monq.core.embedded import free_port as monq_free_port

    return monq_free_port()


@contextlib.contextmanager
def redis_for(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on the PATH (apt-get install redis-server) "
                         "and no --redis URL was given")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly",
                                "no", "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait()


def wait(predicate: Any, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the jobs to finish")
        time.sleep(0.02)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


def run_celery(url: str, jobs: int, concurrency: int) -> dict[str, float]:
    celery_app = make_celery(url)
    noop = celery_app.tasks["bench_peer.noop"]
    client = redis.Redis.from_url(url)
    client.flushdb()
    started = time.perf_counter()
    for _ in range(jobs):
        noop.delay()
    enqueue_rate = jobs / (time.perf_counter() - started)
    env = {**os.environ, REDIS_URL_ENV: url, "PYTHONPATH": str(Path(__file__).parent)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench_peer_celery", "worker", "-Q", KEY,
         "--concurrency", str(concurrency), "--pool", "prefork", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: int(client.get(f"{KEY}:done") or 0) >= jobs)
        first, last = float(client.get(f"{KEY}:first")), float(client.get(f"{KEY}:last"))
        for _ in range(LATENCY_JOBS):
            noop.delay(sent=time.time())
            time.sleep(0.05)
        wait(lambda: int(client.get(f"{KEY}:done") or 0) >= jobs + LATENCY_JOBS)
        latencies = [float(v) * 1000 for v in client.lrange(f"{KEY}:latency", 0, -1)]
    finally:
        worker.terminate()
        worker.wait(30)
    return {"enqueue": enqueue_rate, "drain": jobs / max(1e-3, last - first),
            "p50": statistics.median(latencies), "p99": p99(latencies)}


def run_monq(url: str, jobs: int, concurrency: int) -> dict[str, float]:
    import pymongo

    from monq.core.config import Config
    from monq.core.store import Store
    from monq.queue.enqueue import Origin
    from monq.queue.queue import Queue

    async def enqueue(count: int, origin: str, spacing_s: float = 0.0) -> float:
        store = Store(url)
        await store.ensure_indexes()
        queue = Queue(store, Config(), author="bench", origin=Origin(by="bench",
                                                                     origin=origin))
        started = time.perf_counter()
        for _ in range(count):
            await queue.enqueue(NOOP, {"steps": 1})
            if spacing_s:
                await asyncio.sleep(spacing_s)
        elapsed = time.perf_counter() - started
        await store.close()
        return count / elapsed

    enqueue_rate = asyncio.run(enqueue(jobs, "bulk"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONQ_")},
           "MONQ_MONGODB_URL": url, "MONQ_LOG_LEVEL": "WARNING",
           "MONQ_WORKER_CONCURRENCY": str(concurrency)}
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    db = client.get_default_database()
    worker = subprocess.Popen([str(Path(sys.executable).parent / "monq"), "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: db["sys.journal"].count_documents({}) >= jobs)
        first = db["sys.event"].find_one({"name": "start_job"}, sort=[("_id", 1)])
        last = max(d["finished_at"] for d in db["sys.journal"].find({}, {"finished_at": 1}))
        asyncio.run(enqueue(LATENCY_JOBS, "latency", 0.05))
        wait(lambda: db["sys.journal"].count_documents({}) >= jobs + LATENCY_JOBS)
    finally:
        worker.terminate()
        worker.wait(60)
    assert first is not None
    starts = {e["data"]["_id"]: e["created"] for e in db["sys.event"].find(
        {"name": "start_job"})}
    latencies = [(starts[e["data"]["_id"]] - e["created"]).total_seconds() * 1000
                 for e in db["sys.event"].find({"name": "enqueue_job",
                                                "data.origin": "latency"})]
    drain = jobs / max(1e-3, (last - first["created"]).total_seconds())
    client.drop_database(db.name)
    client.close()
    return {"enqueue": enqueue_rate, "drain": drain, "p50": statistics.median(latencies),
            "p99": p99(latencies)}


def mongotq_worker(url: str, database: str, stop: Any, out: Any) -> None:
    """One mongo-taskqueue consumer: lease, run the no-op, mark it done; poll every
    50 ms when idle (monq's worker.poll_min_s). Sends (sent, started, ended) per task."""
    queue = TaskQueue(database, KEY, host=url, visibility_timeout=30)
    times: list[tuple[float | None, float, float]] = []
    while not stop.is_set():
        task = queue.next()
        if task is None:
            time.sleep(0.05)
            continue
        started = time.time()
        queue.on_success(task)
        times.append(((task.payload or {}).get("sent"), started, time.time()))
    out.put(times)


def run_mongotq(url: str, jobs: int, concurrency: int) -> dict[str, float]:
    """The same workload through mongo-taskqueue on the same MongoDB server: one
    process per slot (it has no worker daemon of its own)."""
    import multiprocessing

    import pymongo

    database = f"bench_mtq_{uuid.uuid4().hex[:8]}"
    queue = TaskQueue(database, KEY, host=url, visibility_timeout=30)
    queue.create_index()
    started = time.perf_counter()
    for _ in range(jobs):
        queue.append({"sent": None})
    enqueue_rate = jobs / (time.perf_counter() - started)
    context = multiprocessing.get_context("spawn")
    stop, out = context.Event(), context.Queue()
    workers = [context.Process(target=mongotq_worker, args=(url, database, stop, out))
               for _ in range(concurrency)]
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
    collection = client[database][KEY]

    def done() -> int:
        return collection.count_documents({"status": "successful"})

    for worker in workers:
        worker.start()
    try:
        wait(lambda: done() >= jobs)
        for _ in range(LATENCY_JOBS):
            queue.append({"sent": time.time()})
            time.sleep(0.05)
        wait(lambda: done() >= jobs + LATENCY_JOBS)
    finally:
        stop.set()
        times = [t for _ in workers for t in out.get(timeout=60)]
        for worker in workers:
            worker.join(30)
    client.drop_database(database)
    client.close()
    bulk = [t for t in times if t[0] is None]
    latencies = [(begun - sent) * 1000 for sent, begun, _ in times if sent is not None]
    return {"enqueue": enqueue_rate,
            "drain": jobs / max(1e-3, max(t[2] for t in bulk) - min(t[1] for t in bulk)),
            "p50": statistics.median(latencies), "p99": p99(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2,
                        help="job slots of the one worker process of each queue")
    parser.add_argument("--url", help="MongoDB server URL (default: embedded SecantusDB)")
    parser.add_argument("--redis", help="Redis URL (default: a throw-away redis-server)")
    args = parser.parse_args()
    if Celery is None:
        print("celery and redis are not installed here: run this from a virtualenv with "
              "both and monq (see the docstring)", file=sys.stderr)
        return 2
    from monq.core.embedded import server_for
    from monq.core.store import with_database

    with redis_for(args.redis) as redis_url:
        celery = run_celery(redis_url, args.jobs, args.concurrency)
        version = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    with server_for(args.url) as server:
        monq = run_monq(with_database(server, f"bench_peer_{uuid.uuid4().hex[:8]}"),
                        args.jobs, args.concurrency)
        mtq = run_mongotq(server, args.jobs, args.concurrency) if TaskQueue else None
    import celery as celery_module

    print(f"jobs: {args.jobs}   one worker process with {args.concurrency} slots each")
    print(f"celery {celery_module.__version__} on redis {version}; monq on {server}"
          + ("; mongo-taskqueue on the same MongoDB server" if mtq else ""))
    print(f"{'measure':<34}{'celery':>10}{'monq':>10}{'monq/celery':>13}"
          + (f"{'mongotq':>10}{'monq/mongotq':>14}" if mtq else ""))
    for key, label in (("enqueue", "enqueue one by one (jobs/s)"),
                       ("drain", "no-op jobs run (jobs/s)"),
                       ("p50", "enqueue-to-start p50 (ms)"),
                       ("p99", "enqueue-to-start p99 (ms)")):
        print(f"{label:<34}{celery[key]:>10.1f}{monq[key]:>10.1f}"
              f"{monq[key] / max(celery[key], 1e-9):>13.2f}"
              + (f"{mtq[key]:>10.1f}{monq[key] / max(mtq[key], 1e-9):>14.2f}" if mtq else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
