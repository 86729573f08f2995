#!/usr/bin/env python3
"""Benchmark monq against peer queues: the same no-op workload, the same server, one run.

    python scripts/bench_peers.py [--url mongodb://host/] [--jobs 300] [--concurrency 2] [--json]

The systems: monq; mongo-taskqueue and Celery on kombu's MongoDB transport, both on
the same MongoDB server as monq (each in a fresh database); and Celery on Redis as a
reference (a throw-away ``redis-server`` from Debian's package, or ``--redis URL``).
Without --url the MongoDB server is a fresh embedded SecantusDB.

The peers are not monq's dependencies: they run from their own virtualenv,
``--peers-venv`` (default ``.bench-peers/`` in the repository), which the script
creates from scripts/peers/requirements.txt when it does not exist; the peers' side
of the workload is scripts/peers/peers.py. A system that cannot run (no
``redis-server``, no virtualenv, a peer that fails) is reported as unavailable, with
the reason, and the others still run.

The workload, the same for each: ``--jobs`` no-op jobs enqueued one by one (the
enqueue rate), then one worker with ``--concurrency`` slots started to drain them
(jobs/s from the first job's start to the last one's end), then ``LATENCY_JOBS``
jobs enqueued 50 ms apart to the idle worker (enqueue-to-start latency). monq runs
`monq.jobs.bench.NoopJob` in one ``monq worker``; Celery its defaults (prefork pool,
acknowledgement on receipt, prefetch 4, no result backend), polling MongoDB every
50 ms (kombu's default is 1 s) as monq's idle worker does; mongo-taskqueue, a library
without a worker daemon, in ``--concurrency`` consumer processes that lease a task,
run it, mark it done and sleep 50 ms when there is none.

``--json`` prints one JSON object: ``systems`` mapping ``monq``, ``mongo-taskqueue``,
``celery-mongodb`` and ``celery-redis`` to ``jobs_per_s``, ``start_p50_ms`` (and
``start_p99_ms``, ``enqueue_per_s``, ``version``), or to ``{"unavailable": reason}``;
and ``ratios``: monq's jobs/s over each peer's. The table goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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

import pymongo
import pymongo.errors

from monq.core.config import Config
from monq.core.embedded import free_port, is_listening, server_for
from monq.core.store import Store, with_database
from monq.queue.enqueue import Origin
from monq.queue.queue import Queue

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
NOOP = "monq.jobs.bench.NoopJob"
LATENCY_JOBS = 30
SPACING_S = 0.05
TIMEOUT_S = 900.0
# how often the script looks whether monq's worker is done: rates come from the
# journal's times, and on the embedded server a count of the journal costs about
# what a job's writes do, so looking every 20 ms (as this script did, where the
# peers report through files) took server time from the worker it measured
POLL_S = 0.5
SYSTEMS = ("monq", "mongo-taskqueue", "celery-mongodb", "celery-redis")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


def peers_python(venv: Path) -> Path:
    """The peers' interpreter; the virtualenv is made on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the peers' virtualenv in {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r",
                        str(PEERS / "requirements.txt")], check=True)
    return python


@contextlib.contextmanager
def redis_for(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server), "
                           "and no --redis URL was given")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly",
                                "no", "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not is_listening("127.0.0.1", port, 0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


def run_peer(python: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run([str(python), str(PEERS / "peers.py"), *args],
                            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"exited with {result.returncode}: {tail[0]}")
    return dict(json.loads(result.stdout))


def drop(url: str) -> None:
    """Drop the database a peer used: the next system starts on a server as clean."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
    try:
        client.drop_database(client.get_default_database().name)
    finally:
        client.close()


def wait_until(predicate: Any, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if worker.poll() is not None:
            raise RuntimeError("the monq worker exited")
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the jobs")
        time.sleep(POLL_S)


def run_monq(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    from importlib.metadata import version

    async def enqueue(count: int, spacing_s: float = 0.0) -> float:
        store = Store(url, timeout_s=10)
        await store.ensure_indexes()
        # lazily, as the API, the CLI, the scheduler and SyncQueue enqueue (the job,
        # then its event; the claim clears the outbox)
        queue = Queue(store, Config(), author="bench", origin=Origin(by="bench", origin="bench"),
                      lazy_enqueue=True)
        started = time.perf_counter()
        for _ in range(count):
            await queue.enqueue(NOOP)
            if spacing_s:
                await asyncio.sleep(spacing_s)
        elapsed = time.perf_counter() - started
        await store.close()
        return count / elapsed

    enqueue_rate = asyncio.run(enqueue(jobs))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONQ_")},
           "MONQ_MONGODB_URL": url, "MONQ_LOG_LEVEL": "WARNING",
           "MONQ_WORKER_CONCURRENCY": str(concurrency)}
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    db = client.get_default_database()
    worker = subprocess.Popen([str(Path(sys.executable).parent / "monq"), "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: db["sys.journal"].estimated_document_count() >= jobs, worker)
        drained = list(db["sys.journal"].find({}, {"started_at": 1, "finished_at": 1}))
        asyncio.run(enqueue(LATENCY_JOBS, SPACING_S))
        wait_until(lambda: db["sys.journal"].estimated_document_count() >= jobs + LATENCY_JOBS,
                   worker)
    finally:
        worker.terminate()
        worker.wait(60)
    spaced = db["sys.journal"].find({}, {"enqueued": 1, "started_at": 1},
                                    sort=[("enqueued.at", -1)], limit=LATENCY_JOBS)
    waits = [(d["started_at"] - d["enqueued"]["at"]).total_seconds() * 1000 for d in spaced]
    first = min(d["started_at"] for d in drained)
    last = max(d["finished_at"] for d in drained)
    client.drop_database(db.name)
    client.close()
    return {"enqueue_per_s": enqueue_rate,
            "jobs_per_s": jobs / max(1e-3, (last - first).total_seconds()),
            "start_p50_ms": statistics.median(waits), "start_p99_ms": p99(waits),
            "version": f"monq {version('monq')}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MongoDB server URL (default: a fresh embedded SecantusDB)")
    parser.add_argument("--redis", help="Redis URL (default: a throw-away redis-server)")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2,
                        help="job slots of the one worker of each system")
    parser.add_argument("--peers-venv", default=str(ROOT / ".bench-peers"),
                        help="the peers' virtualenv (made from scripts/peers/requirements.txt "
                             "when missing)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    found: dict[str, dict[str, Any]] = {}
    python: Path | None = None
    reason = ""
    try:
        python = peers_python(Path(args.peers_venv))
    except (OSError, subprocess.CalledProcessError) as exc:
        reason = f"no peers' virtualenv at {args.peers_venv}: {exc}"
    common = ["--jobs", str(args.jobs), "--concurrency", str(args.concurrency),
              "--latency-jobs", str(LATENCY_JOBS)]
    with server_for(args.url) as server:
        tag = uuid.uuid4().hex[:8]
        try:
            found["monq"] = run_monq(with_database(server, f"bench_monq_{tag}"), args.jobs,
                                     args.concurrency)
        except (RuntimeError, pymongo.errors.PyMongoError) as exc:
            found["monq"] = {"unavailable": str(exc)}
        peers = (("mongo-taskqueue", ["mongotq", "--url",
                                      with_database(server, f"bench_mtq_{tag}")]),
                 ("celery-mongodb", ["celery", "--broker",
                                     with_database(server, f"bench_celery_{tag}")]))
        for name, peer_args in peers:
            try:
                if python is None:
                    raise RuntimeError(reason)
                found[name] = run_peer(python, *peer_args, *common)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                found[name] = {"unavailable": str(exc)}
            with contextlib.suppress(pymongo.errors.PyMongoError):
                drop(peer_args[2])
    try:
        if python is None:
            raise RuntimeError(reason)
        with redis_for(args.redis) as redis_url:
            found["celery-redis"] = run_peer(python, "celery", "--broker", redis_url, *common)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        found["celery-redis"] = {"unavailable": str(exc)}
    ours = found["monq"].get("jobs_per_s")
    ratios = {f"monq/{name}": round(ours / found[name]["jobs_per_s"], 3)
              for name in SYSTEMS[1:] if ours and "jobs_per_s" in found[name]}
    out = sys.stderr if args.json else sys.stdout
    print(f"MongoDB: {args.url or 'a fresh embedded SecantusDB'} ({server})   jobs: {args.jobs}"
          f"   one worker with {args.concurrency} slots per system", file=out)
    print(f"{'system':<17}{'enqueue/s':>10}{'jobs/s':>9}{'start p50 ms':>14}{'start p99 ms':>14}"
          f"  version", file=out)
    for name in SYSTEMS:
        row = found[name]
        if "unavailable" in row:
            print(f"{name:<17}  unavailable: {row['unavailable']}", file=out)
            continue
        print(f"{name:<17}{row['enqueue_per_s']:>10.1f}{row['jobs_per_s']:>9.1f}"
              f"{row['start_p50_ms']:>14.1f}{row['start_p99_ms']:>14.1f}  {row['version']}",
              file=out)
    print("monq's jobs/s over each peer's: " + ", ".join(
        f"{k.split('/')[1]} {v:.2f}" for k, v in ratios.items()), file=out)
    if args.json:
        rounded = {name: {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
                   for name, row in found.items()}
        print(json.dumps({"systems": rounded, "ratios": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
