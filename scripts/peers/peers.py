#!/usr/bin/env python3
"""One peer queue through the benchmark's no-op workload; run by scripts/bench_peers.py
with the peers' virtualenv (celery, kombu, mongo-taskqueue), never with monq's.

    peers.py celery --broker mongodb://host:port/db --jobs 300 --concurrency 2
    peers.py celery --broker redis://127.0.0.1:6379/0 ...
    peers.py mongotq --url mongodb://host:port/db ...

The workload: ``--jobs`` no-op tasks enqueued one by one (the enqueue rate), then one
worker with ``--concurrency`` slots started to drain them (jobs/s from the first
task's start to the last one's end), then ``--latency-jobs`` tasks enqueued 50 ms
apart to the idle worker (enqueue-to-start latency). Each task appends one line
(sent, started, ended) to a file of its own process, written at once; no figure
comes from the broker or a log. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT_ENV = "BENCH_PEER_OUT"
BROKER_ENV = "BENCH_PEER_BROKER"
QUEUE = "bench_peer"
POLL_S = 0.05  # what the MongoDB-polling peers sleep when idle: monq's worker.poll_min_s
SPACING_S = 0.05

_out: list[Any] = []


def record(sent: float | None, started: float) -> None:
    """One line per task in this process's file, written through at once."""
    if not _out:
        _out.append(open(Path(os.environ[OUT_ENV]) / f"{os.getpid()}.txt", "a",  # noqa: SIM115
                         buffering=1))
    _out[0].write(f"{sent if sent is not None else '-'} {started} {time.time()}\n")


def read_records(folder: Path) -> list[tuple[float | None, float, float]]:
    found = []
    for path in folder.glob("*.txt"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                found.append((None if parts[0] == "-" else float(parts[0]), float(parts[1]),
                              float(parts[2])))
    return found


def make_celery(broker: str) -> Any:
    from celery import Celery

    app = Celery("bench_peer", broker=broker)
    app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                    broker_connection_retry_on_startup=True, task_default_queue=QUEUE)
    if broker.startswith("mongodb"):
        # kombu's MongoDB transport polls (1 s by default): as often as monq's idle worker
        app.conf.broker_transport_options = {"polling_interval": POLL_S}

    @app.task(name="bench_peer.noop")
    def noop(sent: float | None = None) -> None:
        record(sent, time.time())

    return app


# the celery worker imports this module (-A peers) and finds its app here
app = make_celery(os.environ[BROKER_ENV]) if os.environ.get(BROKER_ENV) else None


def wait_for(folder: Path, count: int, worker_alive: Any, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while len(read_records(folder)) < count:
        if not worker_alive():
            raise SystemExit("the worker exited")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {count} tasks")
        time.sleep(0.05)


def figures(records: list[tuple[float | None, float, float]], enqueue_s: float,
            jobs: int) -> dict[str, float]:
    bulk = [r for r in records if r[0] is None]
    waits = sorted((started - sent) * 1000 for sent, started, _ in records if sent is not None)
    return {"enqueue_per_s": jobs / enqueue_s,
            "jobs_per_s": len(bulk) / max(1e-3, max(r[2] for r in bulk) - min(r[1] for r in bulk)),
            "start_p50_ms": statistics.median(waits),
            "start_p99_ms": waits[max(0, int(len(waits) * 0.99) - 1)]}


def run_celery(broker: str, jobs: int, concurrency: int, latency_jobs: int) -> dict[str, Any]:
    import celery

    folder = Path(tempfile.mkdtemp(prefix="bench_peer_"))
    noop = make_celery(broker).tasks["bench_peer.noop"]
    started = time.perf_counter()
    for _ in range(jobs):
        noop.delay()
    enqueue_s = time.perf_counter() - started
    env = {**os.environ, BROKER_ENV: broker, OUT_ENV: str(folder),
           "PYTHONPATH": str(Path(__file__).parent)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "peers", "worker", "-Q", QUEUE,
         "--concurrency", str(concurrency), "--pool", "prefork", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(folder, jobs, lambda: worker.poll() is None)
        for _ in range(latency_jobs):
            noop.delay(sent=time.time())
            time.sleep(SPACING_S)
        wait_for(folder, jobs + latency_jobs, lambda: worker.poll() is None)
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    result: dict[str, Any] = figures(read_records(folder), enqueue_s, jobs)
    result["version"] = f"celery {celery.__version__}"
    if broker.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker)
        result["version"] += f" on redis {client.info('server')['redis_version']}"
        client.close()
    else:
        import kombu

        result["version"] += f", kombu {kombu.__version__} MongoDB transport"
    return result


def mongotq_consumer(url: str, database: str, folder: str, stop: Any) -> None:
    """One mongo-taskqueue consumer (it has no worker daemon): lease a task, run the
    no-op, mark it done; sleep POLL_S when there is none."""
    from mongotq import TaskQueue

    os.environ[OUT_ENV] = folder
    queue = TaskQueue(database, QUEUE, host=url, visibility_timeout=30)
    while not stop.is_set():
        task = queue.next()
        if task is None:
            time.sleep(POLL_S)
            continue
        started = time.time()
        queue.on_success(task)
        record((task.payload or {}).get("sent"), started)


def run_mongotq(url: str, jobs: int, concurrency: int, latency_jobs: int) -> dict[str, Any]:
    from importlib.metadata import version

    from mongotq import TaskQueue
    from pymongo.uri_parser import parse_uri

    database = parse_uri(url)["database"] or "bench_mtq"
    folder = Path(tempfile.mkdtemp(prefix="bench_peer_"))
    queue = TaskQueue(database, QUEUE, host=url, visibility_timeout=30)
    queue.create_index()
    started = time.perf_counter()
    for _ in range(jobs):
        queue.append({"sent": None})
    enqueue_s = time.perf_counter() - started
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    consumers = [context.Process(target=mongotq_consumer, args=(url, database, str(folder), stop))
                 for _ in range(concurrency)]
    for consumer in consumers:
        consumer.start()
    try:
        alive = lambda: all(c.is_alive() for c in consumers)  # noqa: E731
        wait_for(folder, jobs, alive)
        for _ in range(latency_jobs):
            queue.append({"sent": time.time()})
            time.sleep(SPACING_S)
        wait_for(folder, jobs + latency_jobs, alive)
    finally:
        stop.set()
        for consumer in consumers:
            consumer.join(30)
    result: dict[str, Any] = figures(read_records(folder), enqueue_s, jobs)
    result["version"] = f"mongo-taskqueue {version('mongo-taskqueue')}"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=("celery", "mongotq"))
    parser.add_argument("--broker", help="celery: the broker URL (redis:// or mongodb://)")
    parser.add_argument("--url", help="mongotq: the MongoDB URL, with its database")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--latency-jobs", type=int, default=30)
    args = parser.parse_args()
    if args.system == "celery":
        result = run_celery(args.broker, args.jobs, args.concurrency, args.latency_jobs)
    else:
        result = run_mongotq(args.url, args.jobs, args.concurrency, args.latency_jobs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
