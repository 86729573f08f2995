#!/usr/bin/env python3
"""Chaos for workers: SIGKILL random workers that hold a job, and check that no job
is lost and none runs twice more often than workers were killed.

    python scripts/chaos_workers.py [--url URL] [--workers 4] [--jobs 500] [--kills 50]

Runs N `monq worker` processes over many short jobs, SIGKILLs a random worker that
holds a job every 1 to 3 seconds and restarts it. Once, it SIGSTOPs a worker
holding a job until its lease has expired and the job ran elsewhere, then
SIGCONTs it: its late result must be refused (one complete_job per job). Prints
jobs enqueued, completed, guarded, lost and run twice; exits 1 if a job is lost, a
job completed twice, or jobs ran twice more often than there were kills. A job whose
holder was killed more than ``queue.max_recoveries`` times ends in error by that
guard, as a job that kills its worker must: it counts as guarded, not lost, only if
the killer's own record says it hit that job so often.
Without --url it starts an embedded SecantusDB on a free port.

    python scripts/chaos_workers.py --db-pause 10 [--db-pauses 3] [--lease 30]

Database-pause mode: instead of killing workers, SIGSTOPs the database server for
the given seconds (shorter than the lease, ``queue.zombie_time_s``) now and then
while the workers run jobs with one attempt each, then SIGCONTs it. An outage
shorter than the lease must change no job's outcome: it prints jobs lost, jobs
completed twice and jobs that ran to completion but ended in error, and exits 1 if
any is not 0. With --url, give the server's process id with --db-pid.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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
from monq.core.embedded import EmbeddedServer, free_port
from monq.core.store import Store, with_database
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue

JOB = "monq.jobs.example.RecordingJob"
ZOMBIE_S = 2.0


class Fleet:
    def __init__(self, url: str, size: int, log_dir: Path, zombie_s: float = ZOMBIE_S) -> None:
        self.url = url
        self.log_dir = log_dir
        self.monq = str(Path(sys.executable).parent / "monq")
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONQ_")},
                    "MONQ_MONGODB_URL": url, "MONQ_MONGODB_EMBEDDED": "never",
                    "MONQ_QUEUE_ZOMBIE_TIME_S": str(zombie_s),
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


def enqueue(url: str, jobs: int, scale: float, attempts: int | None = None) -> None:
    """Enqueue the jobs, each doing 0.05 to 0.25 s of work times `scale`."""
    options = {"attempts": attempts} if attempts else {}

    async def run() -> None:
        store = Store(url)
        await store.ensure_indexes()
        queue = Queue(store, Config(), author="chaos")
        for first in range(0, jobs, 100):
            await queue.enqueue_many([
                EnqueueRequest(JOB, {"db_url": url, "sleep": (0.05 + (j % 5) * 0.05) * scale},
                               options=options)
                for j in range(first, min(first + 100, jobs))])
        await store.close()

    asyncio.run(run())


def sigstop_check(fleet: Fleet, db: Any, rng: random.Random,
                  hits: collections.Counter[Any]) -> str:
    """SIGSTOP a worker holding a job until its job ran elsewhere; then SIGCONT it.
    Its jobs count in `hits`: their recovery is one fault, as a kill's is."""
    holders = fleet.holding(db)
    if not holders:
        return "no worker held a job"
    index = rng.choice(holders)
    process = fleet.processes[index]
    held = [d["_id"] for d in db["sys.queue"].find({"state": "running",
                                                   "locked.pid": process.pid})]
    hits.update(held)
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


def report(db: Any, jobs: int, kills: int, stops: int, hits: collections.Counter[Any],
           max_recoveries: int) -> int:
    """Each worker runs one job at a time, so each fault (a SIGKILL, or the SIGSTOP
    whose job ran elsewhere while its own executor finished it) may run one job
    once more: at least once, never lost. The killer picks workers at random, so
    now and then it hits the holder of one job more than `queue.max_recoveries`
    times (a job recovered once is claimed next, often by the worker just started,
    whose first job waits for its executor); the recovery guard then rightly ends
    that job in error, as it would a job that kills its worker. Such a job counts as
    guarded, not lost, only if its holders were killed or stopped that often; any
    other job not completed is lost."""
    journal = list(db["sys.journal"].find({}, {"state": 1, "recoveries": 1}))
    completed = sum(1 for d in journal if d["state"] == "complete")
    guarded = sum(1 for d in journal if d["state"] == "error"
                  and d.get("recoveries", 0) == max_recoveries
                  and hits[d["_id"]] > max_recoveries)
    runs: dict[Any, int] = {}
    for run in db["chaos.runs"].find({}, {"job_id": 1}):
        runs[run["job_id"]] = runs.get(run["job_id"], 0) + 1
    twice = sum(n - 1 for n in runs.values() if n > 1)
    completes = list(db["sys.event"].aggregate([
        {"$match": {"name": "complete_job"}},
        {"$group": {"_id": "$data._id", "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}]))
    lost = jobs - completed - guarded
    print(f"jobs enqueued:     {jobs}")
    print(f"jobs completed:    {completed}")
    print(f"jobs guarded:      {guarded} (their workers killed over {max_recoveries} times: "
          f"ended in error by queue.max_recoveries)")
    print(f"jobs lost:         {lost}")
    print(f"workers killed:    {kills}")
    print(f"extra runs:        {twice} (allowed: up to {kills + stops}, one per fault)")
    print(f"completed twice:   {len(completes)}")
    # what became of a job not completed: its end and its events (the database is
    # dropped after this report)
    for doc in db["sys.journal"].find({"state": {"$ne": "complete"}}):
        events = [e["name"] for e in db["sys.event"].find({"data._id": doc["_id"]},
                                                          {"name": 1}).sort("_id", 1)]
        print(f"  job #{doc['number']} ended {doc['state']}: {doc.get('last_error')}; "
              f"recoveries {doc.get('recoveries', 0)}; holder killed "
              f"{hits[doc['_id']]} times; events {events}")
    ok = lost == 0 and twice <= kills + stops and not completes
    print("result:            " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def pause_report(db: Any, jobs: int, pauses: int, pause_s: float) -> int:
    """After database pauses shorter than the lease: nothing lost, nothing completed
    twice, and no job that ran to completion ended in error."""
    journal = {d["_id"]: d for d in db["sys.journal"].find({}, {"state": 1, "last_error": 1})}
    completed = sum(1 for d in journal.values() if d["state"] == "complete")
    ran = {r["job_id"] for r in db["chaos.runs"].find({}, {"job_id": 1})}
    ran_but_error = [d for i, d in journal.items() if i in ran and d["state"] != "complete"]
    completes = list(db["sys.event"].aggregate([
        {"$match": {"name": "complete_job"}},
        {"$group": {"_id": "$data._id", "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}}]))
    lost = jobs - len(journal)
    print(f"jobs enqueued:          {jobs}")
    print(f"database pauses:        {pauses} of {pause_s:g}s")
    print(f"jobs completed:         {completed}")
    print(f"jobs lost:              {lost}")
    print(f"completed twice:        {len(completes)}")
    print(f"ran, yet ended badly:   {len(ran_but_error)}")
    for doc in ran_but_error[:5]:
        print(f"    {doc['_id']}: {doc['state']}: {doc.get('last_error')}")
    ok = lost == 0 and not completes and not ran_but_error
    print("result:                 " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def pause_database(pid: int, pause_s: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(pause_s)
    finally:
        os.kill(pid, signal.SIGCONT)


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
    parser.add_argument("--db-pause", type=float, default=0.0, metavar="SECONDS",
                        help="database-pause mode: SIGSTOP the server this long, now and "
                             "then, instead of killing workers")
    parser.add_argument("--db-pauses", type=int, default=3, help="how many pauses")
    parser.add_argument("--db-pid", type=int, default=None,
                        help="the process id of the --url server (for --db-pause)")
    parser.add_argument("--lease", type=float, default=30.0,
                        help="queue.zombie_time_s of the workers in --db-pause mode")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.db_pause and args.url and not args.db_pid:
        parser.error("--db-pause with --url needs --db-pid (the server's process id)")
    if args.db_pause and args.db_pause >= args.lease:
        print(f"warning: a pause of {args.db_pause:g}s is not shorter than the lease "
              f"({args.lease:g}s): jobs may rightly be recovered", file=sys.stderr)
    with ExitStack() as stack:
        db_pid = args.db_pid
        if args.url:
            server = args.url
        else:
            embedded = stack.enter_context(EmbeddedServer("127.0.0.1", free_port(), ":memory:"))
            server = embedded.url
            assert embedded.process is not None
            db_pid = embedded.process.pid
        url = with_database(server, f"chaos_{uuid.uuid4().hex[:8]}")
        log_dir = Path(args.log_dir or stack.enter_context(
            __import__("tempfile").TemporaryDirectory()))
        log_dir.mkdir(parents=True, exist_ok=True)
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
        stack.callback(client.close)
        db = client.get_default_database()
        if args.db_pause:
            assert db_pid is not None
            return pause_mode(args, rng, url, db, db_pid, log_dir, stack)
        enqueue(url, args.jobs, args.sleep_scale)
        fleet = Fleet(url, args.workers, log_dir)
        stack.callback(fleet.stop_all)
        deadline = time.monotonic() + args.timeout
        kills = 0
        hits: collections.Counter[Any] = collections.Counter()  # job id -> its holder's faults
        stopped = ""
        while kills < args.kills and time.monotonic() < deadline:
            time.sleep(rng.uniform(args.min_interval, args.max_interval))
            if kills == args.kills // 2 and not stopped:
                stopped = sigstop_check(fleet, db, rng, hits)
            holders = fleet.holding(db)
            if not holders:
                if db["sys.queue"].count_documents({}) == 0:
                    break
                continue
            index = rng.choice(holders)
            pid = fleet.processes[index].pid
            os.killpg(pid, signal.SIGKILL)
            fleet.processes[index].wait()
            kills += 1
            # what the dead worker held: its leases stay until the sweep finds them
            hits.update(d["_id"] for d in db["sys.queue"].find({"locked.pid": pid}, {"_id": 1}))
            fleet.processes[index] = fleet.spawn(index)
        while time.monotonic() < deadline and db["sys.queue"].count_documents({}):
            time.sleep(0.5)
        print(f"server: {server}   workers: {args.workers}")
        if stopped:
            print(f"sigstop check:     {stopped}")
        code = report(db, args.jobs, kills, 1 if stopped.startswith("stopped") else 0,
                      hits, Config().queue.max_recoveries)
        fleet.stop_all()
        client.drop_database(db.name)
        return code


def pause_mode(args: Any, rng: random.Random, url: str, db: Any, db_pid: int,
               log_dir: Path, stack: ExitStack) -> int:
    enqueue(url, args.jobs, args.sleep_scale, attempts=1)
    fleet = Fleet(url, args.workers, log_dir, zombie_s=args.lease)
    stack.callback(fleet.stop_all)
    deadline = time.monotonic() + args.timeout
    pauses = 0
    while pauses < args.db_pauses and time.monotonic() < deadline:
        time.sleep(rng.uniform(args.min_interval, args.max_interval))
        if db["sys.queue"].count_documents({"state": "running"}) == 0:
            if db["sys.queue"].count_documents({}) == 0:
                break
            continue
        pause_database(db_pid, args.db_pause)
        pauses += 1
    while time.monotonic() < deadline and db["sys.queue"].count_documents({}):
        time.sleep(0.5)
    print(f"server pid: {db_pid}   workers: {args.workers}   lease: {args.lease:g}s")
    code = pause_report(db, args.jobs, pauses, args.db_pause)
    fleet.stop_all()
    db.client.drop_database(db.name)
    return code


if __name__ == "__main__":
    sys.exit(main())
