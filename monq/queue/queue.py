"""`Queue`: one entry point to every operation on jobs, for the API, the CLI, the
worker, the scheduler, scripts and tests. It holds no logic of its own: the
operations live in modules named for who acts,

- `monq.queue.user_actions`: enqueue, hold, resume, kill, remove, restart;
- `monq.queue.worker_actions`: claim, start, progress, heartbeat, complete, fail,
  defer, release, mark_killed / mark_removed;
- `monq.queue.finishing`: what follows a final state (chains, dependents, slots,
  the move to sys.journal);
- `monq.queue.sweeping`: repairs after dead processes;
- `monq.queue.maintenance`: pausing claims;

and every state change goes through `QueueContext.write` (`monq.queue.context`),
driven by the transition table in `monq.queue.states`. The reads (get, list_jobs,
events, read_log) are here until the API's read side takes them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bson import ObjectId

from monq.core.config import Config
from monq.core.store import Store
from monq.core.store.counters import CounterStore
from monq.core.store.jobs import JobFilter, JobStore
from monq.core.store.logs import LogStore
from monq.queue.context import RELAY_DELAY_S, Origin, QueueContext, utc_now
from monq.queue.finishing import Finisher
from monq.queue.maintenance import Maintenance, MaintenanceSwitch
from monq.queue.model import JobRecord
from monq.queue.reads import parse_job_id
from monq.queue.sweeping import FINISH_GRACE_S, Sweeper, SweepReport
from monq.queue.user_actions import UserActions, find_job
from monq.queue.worker_actions import Claim, HeartbeatReply, WorkerActions, WorkerRef

__all__ = ["FINISH_GRACE_S", "Claim", "HeartbeatReply", "Maintenance", "Queue",
           "SweepReport", "WorkerRef", "parse_job_id"]


class Queue:
    """Operations on jobs; ``author`` is who acts (a user name or a worker id)."""

    def __init__(self, store: Store, config: Config, *, author: str | None = None,
                 origin: Origin | None = None, clock: Callable[[], datetime] | None = None,
                 lazy_outbox: bool = False, relay_delay_s: float = RELAY_DELAY_S,
                 lazy_enqueue: bool | None = None) -> None:
        """`lazy_outbox`: clear outboxes by the next write instead of at once, relay
        events and move finished jobs up to `relay_delay_s` late, together (a
        worker's hot path; see `monq.queue.context`). `lazy_enqueue` (default: as
        `lazy_outbox`): enqueue in two round trips, the jobs and their events, and
        leave the events (relayed) in the jobs' outboxes for the claim to drop."""
        self.ctx = QueueContext(store, config, author, origin or Origin(by=author),
                                clock or utc_now, lazy_outbox, relay_delay_s, lazy_enqueue)
        finisher = Finisher(self.ctx)
        users = UserActions(self.ctx, finisher)
        workers = WorkerActions(self.ctx, finisher)
        switch = MaintenanceSwitch(self.ctx.jobs)
        self.enqueue = users.enqueue
        self.enqueue_many = users.enqueue_many
        self.hold = users.hold
        self.resume = users.resume
        self.kill = users.kill
        self.remove = users.remove
        self.restart = users.restart
        self.claim = workers.claim
        self.claim_many = workers.claim_many
        self.claim_seen = workers.claim_seen
        self.next_due = workers.next_due
        self.parallel_full = workers.parallel_full
        self.started = workers.started
        self.start = workers.start
        self.progress = workers.progress
        self.heartbeat = workers.heartbeat
        self.check_leases = workers.check_leases
        self.complete = workers.complete
        self.fail = workers.fail
        self.fail_start = workers.fail_start
        self.defer = workers.defer
        self.release = workers.release
        self.mark_killed = workers.mark_killed
        self.mark_removed = workers.mark_removed
        self.flag_nonstop = workers.flag_nonstop
        self.forget = workers.forget
        self.append_logs = workers.append_logs
        self.sweep = Sweeper(self.ctx, finisher).sweep
        self.flush_events = self.ctx.flush
        self.flush_moves = self.ctx.flush_moves
        self.maintenance = switch.maintenance
        self.set_maintenance = switch.set_maintenance
        self.pause_name = switch.pause_name
        self.resume_name = switch.resume_name

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def author(self) -> str | None:
        return self.ctx.author

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ctx.clock

    @property
    def jobs(self) -> JobStore:
        return self.ctx.jobs

    @jobs.setter
    def jobs(self, jobs: JobStore) -> None:  # tests interleave another actor's call
        self.ctx.jobs = jobs

    @property
    def counters(self) -> CounterStore:
        return self.ctx.counters

    @property
    def logs(self) -> LogStore:
        return self.ctx.logs

    # Reading ----------------------------------------------------------------
    async def get(self, job: str | int | ObjectId) -> JobRecord:
        return await find_job(self.ctx, job)

    async def list_jobs(self, spec: JobFilter | None = None, *, finished: bool = False,
                        skip: int = 0, limit: int = 50, sort: str = "number",
                        descending: bool = False) -> tuple[list[JobRecord], int]:
        docs, total = await self.jobs.page(spec or JobFilter(), finished=finished, skip=skip,
                                           limit=limit, sort=sort, descending=descending)
        return [JobRecord.from_document(d) for d in docs], total

    async def events(self, job: str | int | ObjectId) -> list[dict[str, Any]]:
        record = await self.get(job)
        return await self.jobs.events.for_job(record.id)

    async def read_log(self, job: str | int | ObjectId, *, after: ObjectId | None = None,
                       skip: int = 0, limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        record = await self.get(job)
        return await self.logs.read(record.id, after=after, skip=skip, limit=limit)
