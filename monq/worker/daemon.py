"""The worker daemon: claims jobs, runs each in an executor process, reports
progress and logs in batches, heartbeats its leases, honours kill and removal
requests, maintenance and wall times, sweeps up after dead workers, and shuts
down gracefully.

Work arrives through a change stream on sys.queue where the server has one
(new jobs wake the claim loop at once); otherwise, and for jobs whose time
comes later, an adaptive poll between ``worker.poll_min_s`` and ``poll_max_s``.
The claim loop takes jobs until every slot is busy or none is left; under a backlog
of short jobs it claims some ahead of the free slots (`Worker._ahead_size`).

Every loop runs through `monq.core.loops.periodic` (log, back off, go on); a loop
that cannot go on stops the worker, which then releases its jobs and exits non-zero,
rather than claiming jobs whose leases no loop renews.

Database outages: a job's outcome (its result, failure, defer) is kept and written
again, with backoff, until the database answers or the lease has run out by this
worker's clock; meanwhile the lease loop keeps heartbeating the job, so an outage
shorter than the lease (``queue.zombie_time_s``) changes no job's outcome.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from monq.core.config import Config
from monq.core.errors import Error, LeaseLost
from monq.core.loops import LoopFailed, periodic, supervise
from monq.core.services import wait_for_database
from monq.core.store import Store
from monq.core.store.workers import WATCH_AWAIT_MS, WorkerStore
from monq.core.times import as_utc
from monq.queue.queue import Claim, Maintenance, Queue, WorkerRef
from monq.queue.worker_actions import Started
from monq.worker.executor import Executor, ExecutorDied, ExecutorPool
from monq.worker.peers import Peer, claim_rank, defer_s

log = logging.getLogger("monq.worker")

LEASE_CHECK_S = 0.25
STREAM_READ_S = 0.02  # a busy worker reads its change stream this long, then pauses
# A change stream answered with nothing long before its wait (WATCH_AWAIT_MS) was
# woken by a write it does not pass: the embedded server answers a waiting getMore on
# any write anywhere. Asking again at once would send a getMore per write of every
# process on the server; pausing this long first lets the next answer carry what came
# meanwhile. MongoDB waits for a change the stream lets through (or the end of the
# wait), so there the pause comes seldom if ever, and costs a job at most this long.
EMPTY_WAKE_PAUSE_S = 0.025
PROGRESS_WRITE_S = 1.0
MAINTENANCE_TTL_S = 1.0
RELEASE_EXCLUDE_S = 30.0
LOOP_BACKOFF_MAX_S = 1.0  # back at work within a second of the database answering (#23)
REPORT_RETRY_MIN_S = 0.25
REPORT_RETRY_MAX_S = 1.0
START_FOLD_S = 0.05
IDLE_WAIT_MAX_S = 30.0  # watching changes, an idle worker claims again this often at least
# Claiming ahead, under a backlog: jobs claimed beyond the free slots wait in the
# worker for one, at most AHEAD_PER_SLOT a slot, and only as many as its recent jobs
# run through in AHEAD_WAIT_S (none for jobs that run longer): a job claimed ahead
# waits that long at most, where a claim per free slot costs a query per job
AHEAD_PER_SLOT = 4
AHEAD_WAIT_S = 0.1
RUNTIME_WEIGHT = 0.2  # of the last job, in the running mean of run times
SWEEP_LEASE = "sweeper"
WATCH_RETRY_S = 5.0  # how soon to ask again whether the server has change streams
STOPPED_LOOPS_WAIT_S = 1.0  # a stopping worker waits this long for its cancelled loops


@dataclass
class RunningJob:
    claim: Claim
    executor: Executor | None = None  # None: claimed ahead, not started yet
    started: float = field(default_factory=time.monotonic)
    stop_reason: str | None = None  # kill, remove, lost, shutdown, wall
    progress: tuple[float, str | None, dict[str, Any]] | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    wall_flagged: bool = False
    done: bool = False  # its process has answered: it is no longer ours to stop
    freed: bool = False  # ended, its outcome written: its slot is free for another job
    beat_at: float = field(default_factory=time.monotonic)  # last heartbeat that took
    # its start, until written: a job that ends within START_FOLD_S has its start
    # written in its complete (one write less)
    start: Started | None = None
    start_writer: asyncio.Task[None] | None = None
    start_writing: bool = False

    @property
    def id(self) -> ObjectId:
        return self.claim.job.id

    def on_message(self, message: tuple[Any, ...]) -> None:
        if message[0] == "progress":
            self.progress = (message[1], message[2], message[3])
        elif message[0] == "log":
            self.logs.extend(message[1])


class Worker:
    """One worker process; `run` it until `stop` is set."""

    name = "worker"

    def __init__(self, store: Store, config: Config, *, concurrency: int | None = None,
                 pool: str | None = None, tags: list[str] | None = None) -> None:
        self.config = config
        self.store = store
        self.concurrency = max(1, concurrency or config.worker.concurrency)
        self.pool_name = pool or config.worker.pool
        self.tags = list(tags if tags is not None else config.worker.tags)
        host = socket.gethostname()
        self.ref = WorkerRef(f"{host}-{os.getpid()}-{secrets.token_hex(3)}", host, os.getpid())
        self.queue = Queue(store, config, author=self.ref.id, lazy_outbox=True)
        self.workers = WorkerStore(store)
        self.executors = ExecutorPool(self.concurrency)
        self.running: dict[ObjectId, RunningJob] = {}
        # claimed ahead of a free slot (also in `running`: their leases are renewed)
        self.ahead: collections.deque[RunningJob] = collections.deque()
        self._backlog = False  # the last claim took all it asked for: more may wait
        self._run_s: float | None = None  # the running mean of this worker's run times
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        # what woke the claim loop: changes seen in sys.queue, with how many jobs they
        # made claimable (the claim takes at most that many: no claim storm of every
        # idle worker after one insert), or anything else (a slot freed, the sweep),
        # after which it claims until nothing is left
        self._claimable = 0
        self._claim_all_next = False
        # of those, the jobs changes showed inserted: claimed by id, with no read
        self._seen: dict[ObjectId, dict[str, Any]] = {}
        self._due_at: datetime | None = None  # the next job due, as last known
        # whether jobs may wait that this worker left for want of a free slot: if
        # not, a slot freed while a change stream tells of new work claims nothing
        self._maybe_more = True
        self._found_none = False  # the last claim round ended finding nothing
        # the last claim round may have left jobs for what no change in sys.queue
        # tells the end of (a pause, names paused or given back, parallel slots all
        # taken): the worker polls for them instead of waiting for a change
        self._held_back = False
        self._maintenance = Maintenance(False, frozenset())
        self._maintenance_at = 0.0
        self.started_at = datetime.now(UTC)
        self.released: dict[str, float] = {}  # job names given back, until when
        self.stopping = False
        self._poll_s = config.worker.poll_min_s
        self.stop_event = asyncio.Event()  # run's stop
        self.watching = False  # a change stream wakes the claim loop
        self._sweep_wait_s = config.queue.sweep_interval_s
        self._last_beat = 0.0
        # the pool's live workers, in whose order per job a change's claim is made
        # (`monq.worker.peers`), and when they were read
        self.me = Peer(self.ref.id, frozenset(self.tags))
        self._peers: list[Peer] = []
        self._peers_read = -float("inf")
        self._peers_reader: asyncio.Task[None] | None = None
        # claims deferred to this worker's turn, by job: cancelled when another
        # worker is seen claiming the job first
        self._deferred: dict[Any, asyncio.TimerHandle] = {}

    # Life -------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.stop_event = stop
        if not await wait_for_database(self.store, stop, "worker"):
            return
        await self.executors.start()
        await self._register()
        log.info("worker %s started: pool %s, %d slots, tags %s", self.ref.id, self.pool_name,
                 self.concurrency, self.tags, extra={"action": "worker_started"})
        # the lease loop outlives the claim loop: jobs draining at shutdown keep
        # their leases
        drained = asyncio.Event()
        lease = asyncio.create_task(periodic(
            "the worker's lease loop", self._lease_tick, drained, interval_s=LEASE_CHECK_S,
            backoff_max_s=LOOP_BACKOFF_MAX_S, logger=log), name="worker-leases")
        loops = [lease] + [asyncio.create_task(coro, name=name) for name, coro in (
            ("worker-claims", periodic("the worker's claim loop", self._claim_tick, stop,
                                       interval_s=0, backoff_max_s=LOOP_BACKOFF_MAX_S,
                                       logger=log)),
            ("worker-sweep", periodic("the worker's sweep", self._sweep_tick, stop,
                                      interval_s=self.config.queue.sweep_interval_s,
                                      backoff_max_s=LOOP_BACKOFF_MAX_S, logger=log)),
            ("worker-watch", self._watch_loop(stop)))]
        failed: BaseException | None = None
        try:
            await supervise(loops, stop)
        except LoopFailed as exc:
            failed = exc
            log.error("worker %s stops: %s", self.ref.id, exc,
                      extra={"action": "worker_failed"})
        finally:
            # the claim loop ends by itself once `stop` is set: cancelled between a
            # claim and the start of its task, it would leave the job to the sweep
            for task in loops[2:]:
                task.cancel()
            if self._peers_reader is not None:
                self._peers_reader.cancel()
            for handle in self._deferred.values():
                handle.cancel()
            stop.set()
            self._wake()
            await asyncio.gather(loops[1], return_exceptions=True)
            try:
                await self._shutdown(at_once=failed is not None)
            finally:
                # the cancelled loops end at once, but a change stream's getMore may
                # let the cancellation pass (the driver resumes the stream after an
                # interrupted read) and wait on: it ends when the store closes
                await asyncio.wait(loops[2:], timeout=STOPPED_LOOPS_WAIT_S)
                drained.set()
                await asyncio.gather(lease, return_exceptions=True)
                await self._unregister()
        if failed is not None:
            raise failed

    async def _register(self) -> None:
        await self.workers.register({
            "_id": self.ref.id, "host": self.ref.host, "pid": self.ref.pid,
            "pool": self.pool_name, "concurrency": self.concurrency, "tags": self.tags,
            "started_at": self.started_at, "heartbeat": datetime.now(UTC), "jobs": []})

    async def _shutdown(self, *, at_once: bool = False) -> None:
        self.stopping = True
        for job in list(self.ahead):  # not started: others may run them at once
            await self._stop(job, "shutdown")
        grace = 0.0 if at_once else self.config.worker.shutdown_grace_s
        if self.tasks and grace:
            log.info("waiting up to %.0fs for %d running jobs", grace, len(self.tasks),
                     extra={"action": "worker_draining"})
            await asyncio.wait(self.tasks, timeout=grace)
        for job in list(self.running.values()):
            if job.done:  # its outcome is on its way; its executor may serve another
                continue
            await self._stop(job, "shutdown")
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=10)
        with contextlib.suppress(Error):  # else the sweep does it
            await self.queue.flush_events()
            await self.queue.flush_moves()

    async def _unregister(self) -> None:
        with contextlib.suppress(Error):
            await self.workers.drop_lease(SWEEP_LEASE, self.ref.id)
            await self.workers.unregister(self.ref.id)
        await self.executors.close()
        log.info("worker %s stopped", self.ref.id, extra={"action": "worker_stopped"})

    # Claiming ---------------------------------------------------------------
    async def maintenance(self) -> Maintenance:
        if time.monotonic() - self._maintenance_at > MAINTENANCE_TTL_S:
            self._maintenance = await self.queue.maintenance()
            self._maintenance_at = time.monotonic()
        return self._maintenance

    def _wake(self, claimable: int | None = None) -> None:
        """Wake the claim loop: to claim until nothing is left, or (`claimable`, from
        changes seen) at most that many jobs."""
        if claimable is None:
            self._claim_all_next = True
        else:
            self._claimable += claimable
        self.wake.set()

    def _wake_for(self, doc: dict[str, Any]) -> None:
        """Wake the claim loop to claim this new job (as a change stream showed it)."""
        self._seen[doc["_id"]] = doc
        self.wake.set()

    async def _claim_tick(self) -> float:
        """Claim what this worker can take, then wait to be woken (new work, a slot
        freed) or for the adaptive poll interval; while a change stream wakes it, an
        idle worker waits until the next job is due instead of polling. Woken by
        changes alone, it claims at most the jobs they made claimable and learns
        when the next is due from them, not from another query."""
        woken = self.wake.is_set()
        self.wake.clear()
        seen = list(self._seen.values())
        limit = None if not woken or self._claim_all_next else self._claimable + len(seen)
        self._claimable, self._claim_all_next, self._seen = 0, False, {}
        claimed = await self._claim_all(limit, seen if limit else ()) if limit != 0 else 0
        self._poll_s = (self.config.worker.poll_min_s if claimed
                        else min(self._poll_s * 2, self.config.worker.poll_max_s))
        wait_s = self._poll_s
        if self.watching:
            # changes, freed slots and the due time wake it: no poll
            if self._found_none and (limit is None or self._held_back):
                self._due_at = await self.queue.next_due(self.pool_name)
            elif self._due_at is not None and self._due_at <= datetime.now(UTC):
                self._due_at = None  # claimed since: what comes later, changes tell
            wait_s = (self._until_due(wait_s) if self._busy() < self.concurrency
                      else IDLE_WAIT_MAX_S)
        if not self.stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait_s)
        return 0.0

    def _claim_in_turn(self, job_id: Any, change: dict[str, Any], claimable: int) -> None:
        """Claim what a change made claimable now if this worker is first for the
        job among the pool's workers, else when its turn comes, unless the stream
        shows another worker claiming the job first (`_taken_meanwhile`). A new job
        is claimed by its id (`_wake_for`), other changes by a claim of the most
        urgent (`_wake`)."""
        self._read_peers_soon()
        doc = change.get("fullDocument") if change.get("operationType") == "insert" else None
        tags = (doc or {}).get("tags") or ()
        rank = claim_rank(job_id, tags, self.me, self._peers) if job_id is not None else 0
        wake: Callable[[], None] = (functools.partial(self._wake_for, doc) if doc
                                    else functools.partial(self._wake, claimable))
        if rank == 0 or job_id is None:
            wake()
            return
        earlier = self._deferred.pop(job_id, None)
        if earlier is not None:
            earlier.cancel()
        self._deferred[job_id] = asyncio.get_running_loop().call_later(
            defer_s(rank), self._wake_in_turn, job_id, wake)

    def _wake_in_turn(self, job_id: Any, wake: Callable[[], None]) -> None:
        self._deferred.pop(job_id, None)
        wake()

    def _taken_meanwhile(self, job_id: Any) -> None:
        """A job was claimed: a claim of it this worker deferred is not made."""
        handle = self._deferred.pop(job_id, None)
        if handle is not None:
            handle.cancel()

    def _read_peers_soon(self) -> None:
        """Read the pool's live workers again if the list is older than a third of
        ``worker.dead_after_s`` (in the background: until then the old list holds)."""
        dead_after_s = self.config.worker.dead_after_s
        if time.monotonic() - self._peers_read < dead_after_s / 3 \
                or (self._peers_reader is not None and not self._peers_reader.done()):
            return
        self._peers_read = time.monotonic()
        self._peers_reader = asyncio.get_running_loop().create_task(
            self._read_peers(dead_after_s))

    async def _read_peers(self, dead_after_s: float) -> None:
        since = datetime.now(UTC) - timedelta(seconds=dead_after_s)
        try:
            docs = await self.workers.list(since)
        except Error as exc:  # the old list holds; read again after a while
            log.debug("reading the pool's workers failed: %s", exc)
            return
        self._peers = [Peer.from_document(d) for d in docs
                       if d.get("pool", "default") == self.pool_name and not d.get("stopping")]

    def _until_due(self, poll_s: float) -> float:
        """How long to wait for the next job to be due (at least `poll_s`: one that is
        due already but was not claimed is not this worker's to take)."""
        if self._due_at is None:
            return IDLE_WAIT_MAX_S
        left = (self._due_at - datetime.now(UTC)).total_seconds()
        return min(IDLE_WAIT_MAX_S, max(poll_s, left))

    async def _claim_all(self, limit: int | None = None,
                         seen: Sequence[dict[str, Any]] = ()) -> int:
        """Claim jobs until the slots are full, none is left, or `limit` are taken:
        as many at once as slots are free (`Queue.claim_many`). Of `limit`, the
        jobs `seen` inserted are claimed by id (`Queue.claim_seen`), and none in
        place of those another worker took first."""
        claimed = 0
        self._found_none = self._held_back = False
        while not self.stop_event.is_set() and self._wanted(limit, claimed) > 0:
            maintenance = await self.maintenance()
            if maintenance.global_pause:
                self._found_none = self._held_back = True
                break
            now = time.monotonic()
            self.released = {n: t for n, t in self.released.items() if t > now}
            wanted = self._wanted(limit, claimed)
            excluded = maintenance.paused_names | set(self.released)
            if seen and limit is not None:
                claims = await self.queue.claim_seen(
                    self.ref, seen, wanted, pool=self.pool_name, tags=self.tags,
                    exclude_names=sorted(excluded))
                limit += len(claims) - len(seen)  # what is left: the other changes'
                seen = ()
                self._backlog = False
                self._found_none = not claims
                self._held_back = not claims and (bool(excluded) or self.queue.parallel_full())
            else:
                claims = await self.queue.claim_many(
                    self.ref, wanted, pool=self.pool_name, tags=self.tags,
                    exclude_names=sorted(excluded))
                if not claims:
                    self._maybe_more = self._backlog = False
                    self._found_none = True
                    self._held_back = bool(excluded) or self.queue.parallel_full()
                    break
                # all it asked for, when it asked for all it may take: more may wait
                # (a claim of what changes made claimable tells nothing of the rest)
                self._backlog = limit is None and len(claims) >= wanted
            for claim in claims:
                job = RunningJob(claim)
                self.running[job.id] = job
                self.ahead.append(job)
            self._launch()
            claimed += len(claims)
        if self._busy() >= self.concurrency:
            self._maybe_more = True
        return claimed

    def _busy(self) -> int:
        """Slots taken: by jobs not ended yet (their outcome written), and by those
        claimed ahead."""
        return sum(1 for job in self.running.values() if not job.freed)

    def _in_slots(self) -> int:
        """Jobs started and not ended."""
        return sum(1 for job in self.running.values()
                   if job.executor is not None and not job.freed)

    def _wanted(self, limit: int | None, claimed: int) -> int:
        """How many jobs to claim now: one per free slot, and under a backlog (the
        last claim took all it asked for) as many ahead as `_ahead_size` allows;
        none while any slot is busy or jobs claimed ahead wait."""
        free = self.concurrency - self._busy()
        if free <= 0:
            return 0
        wanted = free + (self._ahead_size() if self._backlog else 0)
        return wanted if limit is None else min(wanted, limit - claimed)

    def _ahead_size(self) -> int:
        """How many jobs to claim ahead of free slots: as many as the slots run
        through in `AHEAD_WAIT_S` by the recent run times, at most `AHEAD_PER_SLOT`
        a slot (none before this worker ran a job)."""
        if self._run_s is None:
            return 0
        per_slot = int(AHEAD_WAIT_S / max(self._run_s, 1e-3))
        return min(AHEAD_PER_SLOT, per_slot) * self.concurrency

    def _launch(self) -> None:
        """Start jobs claimed ahead while a slot is free: one whose job has ended,
        its outcome written (a job may run only once its outcome is safe, so that a
        worker killed re-runs no more jobs than it has slots)."""
        while self.ahead and self._in_slots() < self.concurrency:
            executor = self.executors.try_acquire()
            if executor is None:
                return
            job = self.ahead.popleft()
            job.executor, job.started = executor, time.monotonic()
            self._spawn(job)

    def _spawn(self, job: RunningJob) -> None:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.claim.job.number}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _free(self, job: RunningJob) -> None:
        """Free the job's slot for another, once it ended (its outcome written):
        start a job claimed ahead, or wake the claim loop, unless a change stream
        tells of new work and the last claim left none; a job with a parallel limit
        wakes it anyway (its parallel slot given back: another job of its name may
        run)."""
        job.freed = True
        self._launch()  # (an executor that died is replaced by now)
        if (not self.ahead and (self._maybe_more or not self.watching)) \
                or job.claim.job.max_parallel:
            self._wake()

    async def _execute(self, job: RunningJob) -> None:
        record = job.claim.job
        flusher = asyncio.create_task(self._flush_loop(job))
        dead: Executor | None = None
        try:
            spec = {"id": record.id, "number": record.number, "name": record.name,
                    "args": record.args, "attempt": record.attempt}
            outcome: tuple[Any, ...] = ("unstarted",)  # stopped while claimed ahead
            try:
                async def started(at: datetime) -> None:
                    self._started(job, at)

                if job.executor is not None:
                    outcome = await job.executor.run(spec, job.on_message, started)
                    job.done = True  # before the executor serves another job
                    self._ran(time.monotonic() - job.started)
                    self.executors.release(job.executor)
            except ExecutorDied as died:
                dead = job.executor  # replaced after the outcome is reported
                outcome = ("died", str(died))
            except BaseException:
                # the process may be mid-job: it cannot serve another one
                if job.executor is not None:
                    await job.executor.kill(self.config.worker.kill_grace_s)
                dead = job.executor
                raise
            flusher.cancel()
            await self._report_until_written(job, outcome)
        except LeaseLost as exc:
            log.warning("job #%s: %s", record.number, exc, extra={"action": "lease_lost"})
        except Error as exc:
            log.error("job #%s: %s", record.number, exc, extra={"action": "report_failed"})
        except Exception:
            log.exception("job #%s: unexpected error", record.number,
                          extra={"action": "job_crashed"})
        finally:
            flusher.cancel()
            if job.start_writer is not None and not job.start_writing:
                job.start_writer.cancel()
            self.running.pop(job.id, None)
            self.queue.forget(job.id)
            if dead is not None:
                await self.executors.discard(dead, replace=not self.stopping)
            self._free(job)

    def _ran(self, run_s: float) -> None:
        self._run_s = run_s if self._run_s is None else (
            (1 - RUNTIME_WEIGHT) * self._run_s + RUNTIME_WEIGHT * run_s)

    async def _report_until_written(self, job: RunningJob, outcome: tuple[Any, ...]) -> None:
        """Write the job's last logs and its outcome; while the database does not
        answer, keep them (the job stays ours: the lease loop heartbeats it) and try
        again with backoff until the lease has run out by this worker's clock."""
        delay = REPORT_RETRY_MIN_S
        while True:
            try:
                # a complete writes the job's start and last progress itself, in the
                # same write; other outcomes have them written first
                completes = outcome[0] == "complete" and job.stop_reason is None
                started = await self._settle_start(job, fold=completes)
                await self._flush(job, progress=not completes)
                await self._report(job, outcome, started)
                return
            except LeaseLost:
                raise
            except Error as exc:
                lease_s = self._zombie_time_s(job)
                left = job.beat_at + lease_s - time.monotonic()
                if left <= 0:
                    raise
                log.warning("job #%s: reporting %s failed (%s); again in %.1fs, %.0fs of "
                            "its lease left", job.claim.job.number, outcome[0], exc, delay,
                            left, extra={"action": "report_retry", "job": str(job.id)})
                await asyncio.sleep(min(delay, max(left, 0.05)))
                delay = min(delay * 2, REPORT_RETRY_MAX_S)

    def _zombie_time_s(self, job: RunningJob) -> float:
        return float(job.claim.job.options.get("zombie_time_s")
                     or self.config.queue.zombie_time_s)

    def _started(self, job: RunningJob, at: datetime) -> None:
        """The job's process started it: its start is written after START_FOLD_S,
        unless the job ends first and its complete writes it."""
        job.start = self.queue.started(at)
        job.start_writer = asyncio.create_task(self._write_start(job, START_FOLD_S))

    async def _write_start(self, job: RunningJob, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        job.start_writing = True  # no longer cancelled: it may be half-way
        start = job.start
        if start is None:
            return
        try:
            await self.queue.start(job.id, job.claim.token, start)
            job.start = None
        except LeaseLost as exc:
            log.warning("job #%s: %s", job.claim.job.number, exc,
                        extra={"action": "lease_lost", "job": str(job.id)})
        except Error as exc:  # the job runs; its outcome writes the start later
            log.warning("job #%s: writing its start failed (%s); written later",
                        job.claim.job.number, exc,
                        extra={"action": "start_retry", "job": str(job.id)})
        finally:
            job.start_writing = False

    async def _settle_start(self, job: RunningJob, *, fold: bool) -> Started | None:
        """Before the job's outcome is written: its start, if still to be written
        and `fold`, to go into the outcome's write; else written now."""
        writer = job.start_writer
        if writer is not None and not writer.done():
            if job.start_writing:
                await asyncio.gather(writer, return_exceptions=True)
            else:
                writer.cancel()
        if job.start is None:
            return None
        if fold:
            return job.start
        if job.stop_reason == "lost":  # not ours to write any more
            job.start = None
            return None
        await self.queue.start(job.id, job.claim.token, job.start)
        job.start = None
        return None

    async def _report(self, job: RunningJob, outcome: tuple[Any, ...],
                      started: Started | None = None) -> None:
        record, token, kind = job.claim.job, job.claim.token, outcome[0]
        reason = job.stop_reason
        if reason in ("kill", "wall"):
            await self.queue.mark_killed(record.id, token)
        elif reason == "remove":
            await self.queue.mark_removed(record.id, token)
        elif reason == "lost":
            log.warning("job #%s was stopped: this worker lost its lease", record.number,
                        extra={"action": "lease_lost", "job": str(record.id)})
        elif reason == "shutdown":
            await self.queue.release(record.id, token, "worker shut down")
        elif kind == "complete":
            await self.queue.complete(record.id, token, result=outcome[1],
                                      progress=job.progress, started=started)
            job.progress = None
            job.start = None
        elif kind == "defer":
            await self.queue.defer(record.id, token, outcome[1], outcome[2])
        elif kind == "release":
            # other workers may run it; this one leaves the type alone for a while
            self.released[record.name] = time.monotonic() + RELEASE_EXCLUDE_S
            await self.queue.release(record.id, token, outcome[1])
        elif kind == "failed_start":
            await self.queue.fail_start(record.id, token, outcome[1])
        else:  # failed, or its process died
            await self.queue.fail(record.id, token, outcome[1])
        log.info("job #%s %s", record.number, reason or kind,
                 extra={"action": "job_" + (reason or kind), "job": str(record.id)})

    async def _flush_loop(self, job: RunningJob) -> None:
        while True:
            await asyncio.sleep(PROGRESS_WRITE_S)
            with contextlib.suppress(Error):
                await self._flush(job)

    async def _flush(self, job: RunningJob, *, progress: bool = True) -> None:
        """Write what the job reported since the last flush: one write for the log
        lines, one for the latest progress (unless not `progress`). Lines not written
        are kept for the next."""
        lines, job.logs = job.logs, []
        if lines:
            try:
                await self.queue.append_logs(job.id, lines)
            except Error:
                job.logs = lines + job.logs
                raise
        if progress and job.progress is not None and job.stop_reason is None:
            value, message, data = job.progress
            job.progress = None
            await self.queue.progress(job.id, job.claim.token, value, message, data)

    # Leases -------------------------------------------------------------------
    async def _lease_tick(self) -> None:
        """Heartbeat when a job's lease was last renewed (or taken, by its claim)
        ``worker.heartbeat_s`` ago, or when the worker itself beat a third of
        ``worker.dead_after_s`` ago (it stays listed alive; its jobs listing follows
        with the beat), and in between check the leases for kill and removal
        requests (unless a change stream tells of them); flag jobs past their wall
        time."""
        now = time.monotonic()
        leases_due = any(now - job.beat_at >= self.config.worker.heartbeat_s
                         for job in self.running.values() if job.stop_reason != "lost")
        alive_s = max(self.config.worker.heartbeat_s, self.config.worker.dead_after_s / 3)
        since_s = now - self._last_beat
        if (leases_due and since_s >= self.config.worker.heartbeat_s) or since_s >= alive_s:
            await self._heartbeat()
            self._last_beat = time.monotonic()
        elif self.running and not self.watching:
            await self._apply(await self.queue.check_leases(self._leases()))
        await self._check_wall_times()

    def _leases(self) -> list[tuple[ObjectId, str]]:
        """Every job still ours, also one whose outcome waits to be written."""
        return [(job.id, job.claim.token) for job in self.running.values()
                if job.stop_reason != "lost"]

    async def _heartbeat(self) -> None:
        times = {job.id: self._zombie_time_s(job) for job in self.running.values()}
        sent = time.monotonic()
        reply = await self.queue.heartbeat(self.ref.id, self._leases(), times)
        for job in self.running.values():
            if job.id not in reply.lost:
                job.beat_at = sent
        await self.workers.beat(self.ref.id, datetime.now(UTC), [
            {"_id": j.id, "number": j.claim.job.number, "name": j.claim.job.name}
            for j in self.running.values()])
        await self._apply(reply)

    async def _apply(self, reply: Any) -> None:
        for job_id, reason in ([(i, "kill") for i in reply.kill]
                               + [(i, "remove") for i in reply.remove]
                               + [(i, "lost") for i in reply.lost]):
            job = self.running.get(job_id)
            if job is not None and job.stop_reason is None and not job.done:
                await self._stop(job, reason)

    async def _stop(self, job: RunningJob, reason: str) -> None:
        if job.done:
            return
        job.stop_reason = reason
        if job.executor is None:  # claimed ahead: it never starts
            if job in self.ahead:
                self.ahead.remove(job)
                self._spawn(job)
            return
        log.info("stopping job #%s (%s)", job.claim.job.number, reason,
                 extra={"action": "job_stopping", "reason": reason})
        await job.executor.kill(self.config.worker.kill_grace_s)

    async def _check_wall_times(self) -> None:
        for job in list(self.running.values()):
            wall = job.claim.job.options.get("wall_time_s")
            if (not wall or job.executor is None or job.wall_flagged
                    or time.monotonic() - job.started < wall):
                continue
            job.wall_flagged = True
            await self.queue.flag_nonstop(job.id)
            if job.claim.job.options.get("kill_on_wall") and job.stop_reason is None:
                await self._stop(job, "wall")

    # Sweeping and waking ------------------------------------------------------
    async def _sweep_tick(self) -> float:
        """Sweep, if this worker holds the sweeper's lease (one sweeper at a time).
        A sweep that finds nothing to do while this worker is idle doubles the wait
        to the next, up to half a lease (``queue.zombie_time_s``); work resets it."""
        base_s = self.config.queue.sweep_interval_s
        lease_s = self.config.queue.zombie_time_s
        ttl_s = max(3 * base_s, lease_s)
        if not await self.workers.take_lease(SWEEP_LEASE, self.ref.id, datetime.now(UTC),
                                             ttl_s):
            return ttl_s / 2  # another sweeps; take over within half its lease of it dying
        report = await self.queue.sweep()
        if report.zombies or report.unblocked:
            self._wake()
        if report.relayed or report.moved or report.zombies or report.unblocked \
                or self.running:
            self._sweep_wait_s = base_s
        else:
            self._sweep_wait_s = min(self._sweep_wait_s * 2, max(base_s, lease_s / 2))
        return self._sweep_wait_s

    async def _watch_loop(self, stop: asyncio.Event) -> None:
        """Wake the claim loop on new work; without change streams (a standalone
        server) the poll does it. Either way this loop lasts until `stop`: the
        worker stops when any of its loops ends."""
        while not stop.is_set():
            try:
                supported = await self.store.supports_change_streams()
            except Error:  # unknown for now: the poll covers it meanwhile
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), WATCH_RETRY_S)
                continue
            if not supported:
                await stop.wait()
                return
            await periodic("the worker's change stream", self._watch_changes, stop,
                           interval_s=1.0, backoff_max_s=LOOP_BACKOFF_MAX_S, logger=log)

    async def _watch_changes(self) -> float:
        try:
            async with self.workers.queue_changes() as stream, self.store.errors():
                self.watching = True
                await self._follow(stream)
        except Error:
            if not self.stop_event.is_set():
                raise
            # stopping: the store closed under the stream
        finally:
            self.watching = False
        return 0.0

    async def _follow(self, stream: Any) -> None:
        """Wake the claim loop on the changes that give this worker work, and stop
        its jobs whose kill or removal was asked for. A worker with every slot busy
        needs the stream only for those requests (a freed slot claims anyway), and
        so does one draining a backlog (it claims again as soon as a slot is free):
        such a worker reads it every `LEASE_CHECK_S` for `STREAM_READ_S`, the news
        of that time in a batch or two, rather than a ``getMore`` per change (a
        flood of inserts while it works, or its own writes on a server that answers
        a waiting ``getMore`` on any write)."""
        self._wake()  # a new stream: what happened before it is not known
        self._read_peers_soon()
        read_until = 0.0
        while not self.stop_event.is_set():
            if (self._busy() >= self.concurrency or self._backlog) \
                    and time.monotonic() >= read_until:
                await asyncio.sleep(LEASE_CHECK_S)
                read_until = time.monotonic() + STREAM_READ_S
            asked = time.monotonic()
            change = await stream.try_next()
            if change is None:  # nothing new within the server's wait
                if not stream.alive:
                    return
                read_until = 0.0  # read up
                if time.monotonic() - asked < WATCH_AWAIT_MS / 2000:  # woken early
                    await asyncio.sleep(EMPTY_WAKE_PAUSE_S)
                continue
            key = change.get("documentKey", {}).get("_id")
            fields = change.get("updateDescription", {}).get("updatedFields", {})
            if key in self.running and ("killed_at" in fields or "removed_at" in fields):
                await self._apply(await self.queue.check_leases(self._leases()))
                continue
            if isinstance(fields.get("locked"), dict):  # a claim (this worker's or not)
                self._taken_meanwhile(key)
                continue
            claimable = self._claimable_in(change, fields)
            if claimable:
                self._claim_in_turn(key, change, claimable)
            else:  # a job due later may have moved the next due time up
                self._wake(0)

    def _claimable_in(self, change: dict[str, Any], fields: dict[str, Any]) -> int:
        """How many jobs this worker may claim now by what `change` says (0 or 1):
        an insert says all (pool, query_at, held, blocked); an update what it set,
        and a job it makes due later moves the next due time up."""
        doc = change.get("fullDocument")
        if change.get("operationType") != "insert":
            if not ({"state", "held", "blocked"} & set(fields)):
                return 0  # a kill or removal asked for: nothing new to claim
            doc = fields
        if not doc:
            return 1  # nothing said: try once
        if doc.get("pool", self.pool_name) != self.pool_name or doc.get("held") \
                or doc.get("blocked"):
            return 0
        if doc.get("state", "pending") not in ("pending", "deferred", "failed"):
            return 0
        due = doc.get("query_at")
        if isinstance(due, datetime):
            due = as_utc(due)
            if due > datetime.now(UTC):
                self._due_at = due if self._due_at is None else min(self._due_at, due)
                return 0
        return 1


def services(config: Config, store: Store) -> list[Worker]:
    """The worker of `monq up`."""
    return [Worker(store, config)]
