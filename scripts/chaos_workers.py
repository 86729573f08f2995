#!/usr/bin/env python3
"""Chaos for workers: SIGKILL random workers that hold a job, and check that no job
is lost and none runs twice more often than workers were killed.

    python scripts/chaos_workers.py [--url URL] [--workers 4] [--jobs 500] [--kills 50]

Runs N `monq worker` processes over many short jobs, SIGKILLs a random worker that
holds a job every 1 to 3 seconds and restarts it. Once, it SIGSTOPs a worker
holding a job until its lease has expired and the job ran elsewhere, then
SIGCONTs it: its late result must be refused (one complete_job per job). Prints
jobs enqueued, completed, lost and run twice; exits 1 if a job is lost, a job
completed twice, or jobs ran twice more often than there were kills.
Without --url it starts an embedded SecantusDB on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pymongo

from monq.core.config import Config
from monq.core.embedded import server_for
from monq.core.store import Store, with_database
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue

JOB = "monq.jobs.example.RecordingJob"
ZOMBIE_S = 2.0


class Fleet:
    def __init__(self, url: str, size: int, log_dir: Path) -> None:
        self.url = url
        self.log_dir = log_dir
        self.monq = str(Path(sys.executable).parent / "monq")
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONQ_")},
                    "MONQ_MONGODB_URL": url, "MONQ_MONGODB_EMBEDDED": "never",
                    "MONQ_QUEUE_ZOMBIE_TIME_S": str(ZOMBIE_S),
                    "MONQ_WORKER_HEARTBEAT_S": "0.5", "MONQ_QUEUE_SWEEP_INTERVAL_S": "0.5",
                    "MONQ_WORKER_POLL_MAX_S": "0.2", "MONQ_WORKER_CONCURRENCY": "1",
                    "MONQ_LOG_LEVEL": "WARNING"}
        self.processes: list[subprocess.Popen[bytes]] = [self.spawn(i) for i in range(size)]

    def spawn(self, index: int) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{index}.log", "ab")  # noqa: SIM115
        with log:
            return subprocess.Popen([self.monq, "worker"], env=self.env, stdout=log,
                                    stderr=log, start_new_session=True)

    def holding(self, db: Any) -> list[int]:
        """Indexes of live workers whose process holds a running job."""
        pids = {d["locked"]["pid"] for d in db["sys.queue"].find(
            {"state": "running", "locked": {"$ne": None}}, {"locked.pid": 1})}
        return [i for i, p in enumerate(self.processes) if p.pid in pids and p.poll() is None]

    def stop_all(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def enqueue(url: str, jobs: int, scale: float) -> None:
    """Enqueue the jobs, each doing 0.05 to 0.25 s of work times `scale`."""

    async def run() -> None:
        store = Store(url)
        await store.ensure_indexes()
        queue = Queue(store, Config(), author="chaos")
        for first in range(0, jobs, 100):
            await queue.enqueue_many([
                EnqueueRequest(JOB, {"db_url": url, "sleep": (0.05 + (j % 5) * 0.05) * scale})
                for j in range(first, min(first + 100, jobs))])
        await store.close()

    asyncio.run(run())


def sigstop_check(fleet: Fleet, db: Any, rng: random.Random) -> str:
    """SIGSTOP a worker holding a job until its job ran elsewhere; then SIGCONT it."""
    holders = fleet.holding(db)
    if not holders:
        return "no worker held a job"
    index = rng.choice(holders)
    process = fleet.processes[index]
    held = [d["_id"] for d in db["sys.queue"].find({"state": "running",
                                                   "locked.pid": process.pid})]
    os.killpg(process.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = {d["_id"]: d for d in db["sys.queue"].find({"_id": {"$in": held}})}
        moved = [j for j in held if j not in states or
                 (states[j].get("locked") or {}).get("pid") != process.pid]
        if len(moved) == len(held):
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGCONT)
    time.sleep(1)
    return f"stopped worker {process.pid} holding {len(held)} jobs; they moved on"


def report(db: Any, jobs: int, kills: int, stops: int) -> int:
    """Each worker runs one job at a time, so each fault (a SIGKILL, or the SIGSTOP
    whose job ran elsewhere while its own executor finished it) may run one job
    once more: at least once, never lost."""
    journal = list(db["sys.journal"].find({}, {"state": 1}))
    completed = sum(1 for d in journal if d["state"] == "complete")
    runs: dict[Any, int] = {}
    for run in db["chaos.runs"].find({}, {"job_id": 1}):
        runs[run["job_id"]] = runs.get(run["job_id"], 0) + 1
    twice = sum(n - 1 for n in runs.values() if n > 1)
    completes = list(db["sys.event"].aggregate([
        {"$match": {"name": "complete_job"}},
        {"$group": {"_id": "$data._id", "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}]))
    lost = jobs - completed
    print(f"jobs enqueued:     {jobs}")
    print(f"jobs completed:    {completed}")
    print(f"jobs lost:         {lost}")
    print(f"workers killed:    {kills}")
    print(f"extra runs:        {twice} (allowed: up to {kills + stops}, one per fault)")
    print(f"completed twice:   {len(completes)}")
    ok = lost == 0 and twice <= kills + stops and not completes
    print("result:            " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MongoDB server URL (default: embedded SecantusDB)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--min-interval", type=float, default=1.0)
    parser.add_argument("--max-interval", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--sleep-scale", type=float, default=10.0,
                        help="multiplies each job's 0.05-0.25 s of work")
    parser.add_argument("--log-dir", default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with ExitStack() as stack:
        server = stack.enter_context(server_for(args.url))
        url = with_database(server, f"chaos_{uuid.uuid4().hex[:8]}")
        log_dir = Path(args.log_dir or stack.enter_context(
            __import__("tempfile").TemporaryDirectory()))
        log_dir.mkdir(parents=True, exist_ok=True)
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
        stack.callback(client.close)
        db = client.get_default_database()
        enqueue(url, args.jobs, args.sleep_scale)
        fleet = Fleet(url, args.workers, log_dir)
        stack.callback(fleet.stop_all)
        deadline = time.monotonic() + args.timeout
        kills = 0
        stopped = ""
        while kills < args.kills and time.monotonic() < deadline:
            time.sleep(rng.uniform(args.min_interval, args.max_interval))
            if kills == args.kills // 2 and not stopped:
                stopped = sigstop_check(fleet, db, rng)
            holders = fleet.holding(db)
            if not holders:
                if db["sys.queue"].count_documents({}) == 0:
                    break
                continue
            index = rng.choice(holders)
            os.killpg(fleet.processes[index].pid, signal.SIGKILL)
            fleet.processes[index].wait()
            kills += 1
            fleet.processes[index] = fleet.spawn(index)
        while time.monotonic() < deadline and db["sys.queue"].count_documents({}):
            time.sleep(0.5)
        print(f"server: {server}   workers: {args.workers}")
        if stopped:
            print(f"sigstop check:     {stopped}")
        code = report(db, args.jobs, kills, 1 if stopped.startswith("stopped") else 0)
        fleet.stop_all()
        client.drop_database(db.name)
        return code


if __name__ == "__main__":
    sys.exit(main())
