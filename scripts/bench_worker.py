#!/usr/bin/env python3
"""Benchmark `monq worker` processes end to end against the raw driver, same run.

    python scripts/bench_worker.py [--url mongodb://host/] [--jobs 300] [--json]

For 1, 2 and 4 `monq worker` processes (2 slots each, as they run in production:
their own processes, executor processes for the jobs) it measures how fast they
drain ``--jobs`` no-op jobs (`monq.jobs.bench.NoopJob`, enqueued in batches; jobs/s
from the first job's start to the last one's end, from the journal), the
enqueue-to-start latency of jobs enqueued one at a time 50 ms apart to the idle
workers (p50, p99), and the MongoDB commands the worker processes sent per job
while draining (enqueue excluded; ``getmores_per_job`` says how many of them were
change-stream ``getMore``s: the embedded server answers a waiting ``getMore`` on
any write anywhere, where MongoDB answers it only for a change the stream's filter
lets through, or after ``maxAwaitTimeMS``). With one worker it also counts the
commands an idle worker sends per second, from ``--idle-warmup-s`` after its start
(its start-up sweeps have backed off by then) over ``--idle-s`` seconds. The raw
baseline is a bare claim (``find_one_and_update``) and complete (``update_one``)
loop on the same kind of server; ``ratio`` is jobs/s over it. A second baseline,
``raw_queue_per_s``, runs the same bare loop on monq's own sys.queue: the jobs as
monq enqueues them, with its indexes (``ratio_to_raw_queue``). The two differ by
what the server pays per document and index, which on the embedded server is
most of a write's cost. A third, the floor (``floor_per_s``), runs on monq's
collections the writes its guarantees need and nothing of monq's own: in batches of
``FLOOR_BATCH`` jobs, a read in claim order, the fenced claims, the fenced completes
with their events, the events into sys.event, the jobs into sys.journal and out of
sys.queue: six commands a batch, with the thinnest fences (``ratio_to_floor``). The
raw loops write no event and no journal, so the floor's rate over theirs bounds what
any design with monq's guarantees can reach on that server.

On the embedded server started here, the script also reads the server's CPU time
from /proc (``server_ms_per_job``): for the baselines, during their loops (and
``enqueue_server_ms_per_job`` for the floor's enqueue); for each worker count, from
the enqueue to the end of the drain, the enqueue included. Where the server is
busy all the time a drain lasts, more workers cannot drain faster unless a job
costs the server less.

A control separates what monq's workers do from what the server charges for their
change streams: one worker drains and serves the spaced jobs while three more wait
on another database of the same server, so that they never claim (on the embedded
server each waiting change stream is answered on every write anywhere, and its
next ``getMore`` costs server time; on MongoDB it is answered only for a change
its filter lets through). If the control's start latency is that of four working
workers, the latency four add is the server's, not their coordination's.

Worker counts are compared on equal terms: without --url, each worker count (and
the baseline) gets a fresh embedded SecantusDB, so none runs on a server aged by
another's writes; with --url, each gets a fresh database on that server.

The worker processes count their own commands: the script sets
``MONQ_BENCH_COMMANDS_DIR`` for them (see monq/core/command_count.py), and every
Store in them counts what it sends and writes the counts to a file.

``--json`` prints one JSON object: ``raw_per_s``, ``raw_queue_per_s``,
``floor_per_s``, ``server_ms_per_job`` (``raw``, ``raw_queue``, ``floor``; embedded
server only), ``idle_commands_per_s`` and ``workers`` mapping "1", "2", "4" to
``jobs_per_s``, ``ratio``, ``ratio_to_raw_queue``, ``ratio_to_floor``,
``start_p50_ms``, ``start_p99_ms``, ``commands_per_job``, ``ratio_to_one_worker``
(and ``server_ms_per_job``, embedded server only), and ``one_beside_watchers`` (the
control: ``jobs_per_s``, ``ratio_to_one_worker``, ``start_p50_ms``,
``start_p99_ms``); the table goes to stderr.
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
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne

from monq.core.command_count import ENV as COUNT_ENV
from monq.core.command_count import FLUSH_S, read_counts
from monq.core.config import Config
from monq.core.embedded import server_process_for
from monq.core.store import Store, layout, with_database
from monq.core.store.events import event_id, new_event
from monq.queue.enqueue import EnqueueRequest, Origin
from monq.queue.queue import Queue
from monq.worker.executor import ExecutorPool

NOOP = "monq.jobs.bench.NoopJob"
WORKER_COUNTS = (1, 2, 4)
WATCHERS = 3  # the control's idle workers on another database: 1 + 3 = 4 change streams
SLOTS = 2
# the table's columns after the worker count: title, width, JSON key, decimals
COLUMNS = (("jobs/s", 9, "jobs_per_s", 1), ("ratio", 8, "ratio", 2),
           ("to queue", 10, "ratio_to_raw_queue", 2), ("to floor", 10, "ratio_to_floor", 2),
           ("to 1 worker", 13, "ratio_to_one_worker", 2), ("start p50 ms", 14, "start_p50_ms", 1),
           ("start p99 ms", 14, "start_p99_ms", 1), ("commands/job", 14, "commands_per_job", 2),
           ("of them getMore", 17, "getmores_per_job", 2),
           ("server ms/job", 15, "server_ms_per_job", 1))
FLOOR_BATCH = 8  # jobs a batch in the floor loop: a worker's 2 slots and its claims ahead
LATENCY_JOBS = 40
LATENCY_SPACING_S = 0.05
IDLE_S = 30.0
IDLE_WARMUP_S = 20.0  # an idle worker's start-up sweeps back off within this
TIMEOUT_S = 900.0
# how often the script looks whether the workers are done: rates come from the
# journal's times, not from when it looked, and on the embedded server each look
# (a count of the journal) costs the server as much as a job's writes, so looking
# every 20 ms, as this script did, took server time from the workers it measured
POLL_S = 0.5


@contextlib.contextmanager
def fresh_database(url: str | None, name: str) -> Iterator[tuple[str, int | None]]:
    """A database nobody wrote to, on a new embedded server unless --url is given;
    and the embedded server's process id (None with --url), for its CPU time."""
    with server_process_for(url) as (server, pid):
        yield with_database(server, f"{name}_{uuid.uuid4().hex[:8]}"), pid


def cpu_s(pid: int | None) -> float | None:
    """The CPU seconds a local process has used (user and system), from /proc; None
    without a process id or /proc (a server not started here)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_cpu(pid: int | None, jobs: int, into: dict[str, float]) -> Iterator[None]:
    """Put into `into` the server's CPU milliseconds per job (``server_ms_per_job``)
    spent during the block, when the server is the embedded one started here: what a
    job costs the server, whatever the client does."""
    before = cpu_s(pid)
    yield
    after = cpu_s(pid)
    if before is not None and after is not None:
        into["server_ms_per_job"] = (after - before) * 1000 / jobs


def raw_rate(url: str, jobs: int, *, on_queue: bool = False, pid: int | None = None,
             into: dict[str, float]) -> float:
    """Bare claims and completes a second, on a collection of bare documents with
    one index, or (`on_queue`) on monq's sys.queue with its jobs and indexes; the
    server's CPU per job into `into`."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
    if on_queue:
        asyncio.run(enqueue(url, jobs, indexes=True))
        coll = client.get_default_database()[layout.QUEUE]
    else:
        coll = client.get_default_database()["raw"]
        coll.create_index([("state", 1), ("priority", -1), ("_id", 1)])
        coll.insert_many([{"state": "pending", "priority": 0} for _ in range(jobs)])
    started = time.perf_counter()
    with server_cpu(pid, jobs, into):
        for _ in range(jobs):
            doc = coll.find_one_and_update({"state": "pending"}, {"$set": {"state": "running"}},
                                           sort=[("priority", -1), ("_id", 1)],
                                           return_document=ReturnDocument.AFTER)
            assert doc is not None
            coll.update_one({"_id": doc["_id"]}, {"$set": {"state": "complete"}})
    rate = jobs / (time.perf_counter() - started)
    client.drop_database(client.get_default_database().name)
    client.close()
    return rate


def floor_rate(url: str, jobs: int, batch: int = FLOOR_BATCH, *, pid: int | None = None,
               into: dict[str, float]) -> float:
    """The writes monq's guarantees need, and nothing of monq's own: jobs/s of a bare
    loop on monq's collections, with its indexes and its jobs as enqueued, that takes
    `batch` jobs at a time (a read in claim order; a claim each, fenced by its state,
    pushing its event, in one bulk), completes them (fenced by the lease token, with
    the start and complete events, in one bulk) and ends them (their three events into
    sys.event, the jobs into sys.journal, out of sys.queue: a command each). That is
    six commands per `batch` jobs, fewer than monq sends, and the thinnest fences: a
    ceiling for monq on this server, where the raw loop writes no event, no journal."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    enqueued: dict[str, float] = {}
    with server_cpu(pid, jobs, enqueued):
        asyncio.run(enqueue(url, jobs, indexes=True))
    if "server_ms_per_job" in enqueued:
        into["enqueue_server_ms_per_job"] = enqueued["server_ms_per_job"]
    db = client.get_default_database()
    queue, journal, events = db[layout.QUEUE], db[layout.JOURNAL], db[layout.EVENT]

    def event(name: str, doc: dict[str, Any], state: str) -> dict[str, Any]:
        """An event as monq writes it into sys.event (`new_event`, naming its job,
        with the ``seq`` its insert stamps)."""
        return {**new_event(name, channel="queue", author="floor",
                            data={"_id": doc["_id"], "number": doc["number"],
                                  "name": doc["name"], "state": state}),
                "seq": event_id()}

    started = time.perf_counter()
    with server_cpu(pid, jobs, into):
        while docs := queue.find({"state": "pending"}).sort(
                [("state", 1), ("priority", -1), ("_id", 1)]).limit(batch).to_list():
            now, token = datetime.now(UTC), uuid.uuid4().hex
            claims = [event("request_start_job", d, "running") for d in docs]
            queue.bulk_write([UpdateOne({"_id": d["_id"], "state": "pending"},
                                        {"$set": {"state": "running",
                                                  "locked": {"token": token, "at": now}},
                                         "$inc": {"attempts_left": -1},
                                         "$push": {"outbox": e}})
                              for d, e in zip(docs, claims, strict=True)], ordered=False)
            ends = [(event("start_job", d, "running"), event("complete_job", d, "complete"))
                    for d in docs]
            queue.bulk_write([UpdateOne({"_id": d["_id"], "locked.token": token},
                                        {"$set": {"state": "complete", "started_at": now,
                                                  "finished_at": datetime.now(UTC)},
                                         "$push": {"outbox": {"$each": list(e)}}})
                              for d, e in zip(docs, ends, strict=True)], ordered=False)
            events.insert_many([e for c, e2 in zip(claims, ends, strict=True)
                                for e in (c, *e2)], ordered=False)
            journal.insert_many([{**{k: v for k, v in d.items() if k != "outbox"},
                                  "state": "complete", "finished_at": now} for d in docs],
                                ordered=False)
            queue.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
    rate = jobs / (time.perf_counter() - started)
    assert journal.count_documents({}) == jobs
    client.drop_database(client.get_default_database().name)
    client.close()
    return rate


async def enqueue(url: str, jobs: int, spacing_s: float = 0.0, *,
                  indexes: bool = False) -> None:
    """`jobs` no-op jobs: in batches of 100, or one by one `spacing_s` apart (after
    creating monq's indexes, if `indexes`: a worker does that at its start)."""
    store = Store(url, timeout_s=10)
    if indexes:
        await store.ensure_indexes()
    # as the API, the CLI, the scheduler and SyncQueue enqueue (lazy_enqueue)
    queue = Queue(store, Config(), author="bench", origin=Origin(by="bench", origin="bench"),
                  lazy_enqueue=True)
    if spacing_s:
        for _ in range(jobs):
            await queue.enqueue(NOOP)
            await asyncio.sleep(spacing_s)
    else:
        for i in range(0, jobs, 100):
            await queue.enqueue_many([EnqueueRequest(NOOP) for _ in range(min(100, jobs - i))])
    await store.close()


def wait_until(predicate: Any, what: str, workers: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if any(w.poll() is not None for w in workers):
            raise SystemExit(f"a worker exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def settled_commands(folder: Path) -> tuple[int, int]:
    """The commands the worker processes have sent, and of them the change streams'
    ``getMore``s, once their counts are written (each process writes at most every
    FLUSH_S, and at once on its next command)."""
    time.sleep(FLUSH_S * 2.5)
    counts = read_counts(folder).values()
    return (sum(sum(c.values()) for c in counts), sum(c.get("getMore", 0) for c in counts))


def run_workers(url: str, jobs: int, processes: int, idle_s: float,
                warmup_s: float = IDLE_WARMUP_S, *, watchers: int = 0,
                pid: int | None = None) -> dict[str, float]:
    """One worker count on a fresh database: jobs/s, start latency, commands. With
    `watchers`, as many more workers wait on another database of the same server
    and get no job: what their change streams alone cost the ones that work (the
    embedded server answers every waiting getMore on any write anywhere)."""
    folder = Path(tempfile.mkdtemp(prefix="monq_bench_commands_"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONQ_")},
           "MONQ_MONGODB_URL": url, "MONQ_LOG_LEVEL": "WARNING",
           "MONQ_WORKER_CONCURRENCY": str(SLOTS), COUNT_ENV: str(folder)}
    monq = str(Path(sys.executable).parent / "monq")
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    db = client.get_default_database()
    elsewhere = client[f"{db.name}_elsewhere"]
    result: dict[str, float] = {}
    workers = [subprocess.Popen([monq, "worker"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(processes)]
    # counted apart: their commands are not the working workers'
    watcher_env = {**env, "MONQ_MONGODB_URL": with_database(url, elsewhere.name),
                   COUNT_ENV: tempfile.mkdtemp(prefix="monq_bench_watchers_")}
    workers += [subprocess.Popen([monq, "worker"], env=watcher_env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL) for _ in range(watchers)]
    try:
        wait_until(lambda: db["sys.worker"].count_documents({}) >= processes
                   and elsewhere["sys.worker"].count_documents({}) >= watchers,
                   "the workers to register", workers)
        time.sleep(warmup_s if idle_s else 1.0)  # past their start-up commands
        before = settled_commands(folder)
        if idle_s:
            time.sleep(idle_s)
            after = settled_commands(folder)
            window_s = idle_s + FLUSH_S * 2.5
            result["idle_commands_per_s"] = (after[0] - before[0]) / window_s
            result["idle_getmores_per_s"] = (after[1] - before[1]) / window_s
            before = after
        # the server's CPU from the enqueue to the drain's end: the enqueue included
        with server_cpu(pid, jobs, result):
            asyncio.run(enqueue(url, jobs))
            wait_until(lambda: db["sys.journal"].estimated_document_count() >= jobs,
                       f"{jobs} jobs to finish", workers)
        after = settled_commands(folder)
        result["commands_per_job"] = (after[0] - before[0]) / jobs
        result["getmores_per_job"] = (after[1] - before[1]) / jobs
        drained = list(db["sys.journal"].find({}, {"started_at": 1, "finished_at": 1}))
        first = min(d["started_at"] for d in drained)
        last = max(d["finished_at"] for d in drained)
        result["jobs_per_s"] = jobs / max(0.001, (last - first).total_seconds())
        asyncio.run(enqueue(url, LATENCY_JOBS, LATENCY_SPACING_S))
        wait_until(lambda: db["sys.journal"].estimated_document_count() >= jobs + LATENCY_JOBS,
                   "the latency jobs to finish", workers)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
    spaced = db["sys.journal"].find({}, {"enqueued": 1, "started_at": 1},
                                    sort=[("enqueued.at", -1)], limit=LATENCY_JOBS)
    waits = sorted((d["started_at"] - d["enqueued"]["at"]).total_seconds() * 1000
                   for d in spaced)
    result["start_p50_ms"] = statistics.median(waits)
    result["start_p99_ms"] = waits[max(0, int(len(waits) * 0.99) - 1)]
    client.drop_database(db.name)
    client.drop_database(elsewhere.name)
    client.close()
    for path in (folder, Path(watcher_env[COUNT_ENV])):
        shutil.rmtree(path, ignore_errors=True)
    return result


async def isolation(jobs: int) -> tuple[float, float]:
    """Seconds per no-op job inline and through a (reused) executor process."""
    from monq.jobs.bench import NoopJob

    started = time.perf_counter()
    for _ in range(jobs):
        NoopJob(args={}).execute()
    inline = (time.perf_counter() - started) / jobs
    pool = ExecutorPool(1)
    await pool.start()
    executor = await pool.acquire()

    async def started_cb(_at: object) -> None:
        return None

    started = time.perf_counter()
    for _ in range(jobs):
        await executor.run({"id": ObjectId(), "number": 1, "name": NOOP, "args": {},
                            "attempt": 1}, lambda m: None, started_cb)
    isolated = (time.perf_counter() - started) / jobs
    pool.release(executor)
    await pool.close()
    return inline, isolated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MongoDB server URL (default: a fresh embedded "
                                      "SecantusDB for each measure)")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--idle-s", type=float, default=IDLE_S,
                        help="how long to count an idle worker's commands")
    parser.add_argument("--idle-warmup-s", type=float, default=IDLE_WARMUP_S,
                        help="how long after its start the idle count begins")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    server: dict[str, dict[str, float]] = {"raw": {}, "raw_queue": {}, "floor": {}}
    with fresh_database(args.url, "bench_raw") as (url, pid):
        baseline = raw_rate(url, args.jobs, pid=pid, into=server["raw"])
    with fresh_database(args.url, "bench_rawq") as (url, pid):
        queue_baseline = raw_rate(url, args.jobs, on_queue=True, pid=pid,
                                  into=server["raw_queue"])
    with fresh_database(args.url, "bench_floor") as (url, pid):
        floor = floor_rate(url, args.jobs, pid=pid, into=server["floor"])
    rows: dict[str, dict[str, float]] = {}
    idle_per_s = idle_getmores_per_s = 0.0
    for n in WORKER_COUNTS:
        with fresh_database(args.url, f"bench_w{n}") as (url, pid):
            row = run_workers(url, args.jobs, n, args.idle_s if n == 1 else 0.0,
                              args.idle_warmup_s, pid=pid)
        idle_per_s = row.pop("idle_commands_per_s", idle_per_s)
        idle_getmores_per_s = row.pop("idle_getmores_per_s", idle_getmores_per_s)
        row["ratio"] = row["jobs_per_s"] / baseline
        row["ratio_to_raw_queue"] = row["jobs_per_s"] / queue_baseline
        row["ratio_to_floor"] = row["jobs_per_s"] / floor
        # issue 19 also judges more workers against one: ≥ 1.0 means they do not slow down
        row["ratio_to_one_worker"] = row["jobs_per_s"] / rows["1"]["jobs_per_s"] if rows else 1.0
        rows[str(n)] = {k: round(v, 3) for k, v in row.items()}
    # the control: one worker at work, three waiting on another database
    with fresh_database(args.url, "bench_w1_beside3") as (url, pid):
        control = run_workers(url, args.jobs, 1, 0.0, watchers=WATCHERS, pid=pid)
    control["ratio_to_one_worker"] = control["jobs_per_s"] / rows["1"]["jobs_per_s"]
    beside = {k: round(control[k], 3) for k in ("jobs_per_s", "ratio_to_one_worker",
                                                 "start_p50_ms", "start_p99_ms",
                                                 "server_ms_per_job") if k in control}
    inline, isolated = asyncio.run(isolation(200))
    out = sys.stderr if args.json else sys.stdout
    ms = {k: v.get("server_ms_per_job", float("nan")) for k, v in server.items()}
    print(f"server: {args.url or 'a fresh embedded SecantusDB per measure'}   jobs: "
          f"{args.jobs}   raw driver baseline: {baseline:.1f} claim+complete/s, "
          f"{queue_baseline:.1f}/s on monq's sys.queue", file=out)
    print(f"the writes monq's guarantees need, bare, {FLOOR_BATCH} jobs a batch (the floor): "
          f"{floor:.1f} jobs/s, {floor / baseline:.2f} of the raw loop", file=out)
    if server["raw"]:  # the embedded server, started here
        print(f"server CPU per job: raw loop {ms['raw']:.1f} ms, on sys.queue "
              f"{ms['raw_queue']:.1f} ms, the floor {ms['floor']:.1f} ms (its enqueue "
              f"{server['floor'].get('enqueue_server_ms_per_job', float('nan')):.1f} ms "
              f"more)", file=out)
    print(f"{'workers':>8}" + "".join(f"{title:>{width}}" for title, width, _, _ in COLUMNS),
          file=out)
    for count, row in rows.items():
        print(f"{count:>8}" + "".join(f"{row.get(key, float('nan')):>{width}.{digits}f}"
                                      for _, width, key, digits in COLUMNS), file=out)
    print(f"1 worker beside {WATCHERS} waiting on another database of the server: "
          f"{beside['jobs_per_s']:.1f} jobs/s ({beside['ratio_to_one_worker']:.2f} of one "
          f"alone), start p50 {beside['start_p50_ms']:.1f} ms, p99 "
          f"{beside['start_p99_ms']:.1f} ms", file=out)
    print(f"an idle worker ({SLOTS} slots, {args.idle_warmup_s:.0f} s after its start, over "
          f"{args.idle_s:.0f} s): {idle_per_s:.2f} commands/s, of them {idle_getmores_per_s:.2f} "
          f"change-stream getMores", file=out)
    print(f"process isolation: {inline * 1e6:.0f} us per no-op job inline, "
          f"{isolated * 1e6:.0f} us in an executor process (reused, not spawned per job)",
          file=out)
    if args.json:
        print(json.dumps({"raw_per_s": round(baseline, 1),
                          "raw_queue_per_s": round(queue_baseline, 1),
                          "floor_per_s": round(floor, 1),
                          "server_ms_per_job": {k: {m: round(v, 2) for m, v in d.items()}
                                                for k, d in server.items()},
                          "idle_commands_per_s": round(idle_per_s, 2),
                          "idle_getmores_per_s": round(idle_getmores_per_s, 2), "workers": rows,
                          "one_beside_watchers": beside,
                          "isolation_us": {"inline": round(inline * 1e6, 1),
                                           "executor": round(isolated * 1e6, 1)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
