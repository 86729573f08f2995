"""The Queue API: every operation on jobs, for users (enqueue, hold, kill, ...)
and for workers (claim, start, progress, complete, ...).

Every state change is one conditional write in `JobStore.transition` that
names the states the job may leave (and, for a worker, its lease token); no
match raises `TransitionRefused` (naming the job's current state) or, for a
worker whose lease is gone, `LeaseLost`. The event of the change travels in the
same write and is relayed to sys.event right after; `sweep` relays what a dead
process left behind, finishes half-done moves to the journal, and recovers jobs
of dead workers.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from monq.core.config import Config
from monq.core.errors import (
    DatabaseUnavailable,
    LeaseLost,
    NotFound,
    TransitionRefused,
    ValidationError,
)
from monq.core.store import Store
from monq.core.store.counters import CounterStore
from monq.core.store.events import new_event
from monq.core.store.jobs import JobFilter, JobStore
from monq.core.store.logs import LogStore
from monq.notify.webhook_policy import WebhookPolicy
from monq.queue.enqueue import EnqueueRequest, Origin, build_document
from monq.queue.model import JobRecord
from monq.queue.states import (
    FINAL,
    QUEUED,
    STOPPED,
    WAITING,
    EventName,
    State,
    sources_of,
)

log = logging.getLogger("monq.queue")

RELAY_GRACE_S = 2.0
# A final job still in sys.queue is finished by its own writer right after the write
# (relay, chain, journal move); the sweep takes over only this long after, so it does
# not finish a second time what is being finished now.
FINISH_GRACE_S = 5.0
# The filter of every worker write that puts a job back to waiting: a kill or removal
# asked for meanwhile makes it miss, and the job ends killed or removed instead.
NOT_STOPPED: dict[str, Any] = {"killed_at": None, "removed_at": None}
SLOT_GRACE_S = 10.0
FULL_NAMES_TTL_S = 1.0


@dataclass(frozen=True)
class WorkerRef:
    id: str
    host: str
    pid: int


@dataclass(frozen=True)
class Claim:
    job: JobRecord
    token: str


@dataclass(frozen=True)
class HeartbeatReply:
    kill: frozenset[ObjectId]
    remove: frozenset[ObjectId]
    lost: frozenset[ObjectId]


@dataclass(frozen=True)
class Maintenance:
    global_pause: bool
    paused_names: frozenset[str]


@dataclass(frozen=True)
class SweepReport:
    relayed: int = 0
    moved: int = 0
    zombies: int = 0
    unblocked: int = 0


def seconds_between(start: datetime, end: datetime) -> float:
    """Seconds from `start` to `end`, never negative (clocks of two hosts may differ)."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return max(0.0, round((end - start).total_seconds(), 6))


def annotate(doc: dict[str, Any], event_id: ObjectId, **figures: Any) -> None:
    """Add figures known only once the write returned (how long the job waited to be
    claimed, how long it ran) to the data of the event about to be relayed from the
    job's outbox. They are measurements for metrics, not part of the state change: an
    event relayed by a sweep after a crash goes out without them."""
    for event in doc.get("outbox") or []:
        if event.get("_id") == event_id:
            event["data"] = {**event.get("data", {}), **figures}


def parse_job_id(value: str | int | ObjectId) -> ObjectId | int:
    """A job id or number from what a person typed."""
    if isinstance(value, ObjectId | int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lstrip("#")
    # ASCII digits only ("³" is a digit to str.isdigit but not to int), and no more
    # than MongoDB's integers hold
    if text.isascii() and text.isdigit() and int(text) < 2**63:
        return int(text)
    try:
        return ObjectId(text)
    except (InvalidId, TypeError):
        raise ValidationError(f"not a job id or number: {value!r}", field="id") from None


class Queue:
    """Operations on jobs; ``author`` is who acts (a user name or a worker id)."""

    def __init__(self, store: Store, config: Config, *, author: str | None = None,
                 origin: Origin | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.config = config
        self.jobs = JobStore(store)
        self.counters = CounterStore(store)
        self.logs = LogStore(store)
        self.author = author
        self.origin = origin or Origin(by=author)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._full: list[str] = []
        self._full_checked = -FULL_NAMES_TTL_S

    def acting_as(self, author: str | None, origin: str = "api") -> Queue:
        """The same queue, acting for another user."""
        return Queue(self.store, self.config, author=author,
                     origin=Origin(by=author, origin=origin), clock=self.clock)

    def _event(self, name: EventName, state: State | str, now: datetime,
               author: str | None = None, **data: Any) -> dict[str, Any]:
        return new_event(str(name), channel="queue", author=author or self.author, now=now,
                         data={"state": str(state), **data})

    # Enqueue ----------------------------------------------------------------
    async def enqueue(self, name: str, args: dict[str, Any] | None = None,
                      **options: Any) -> JobRecord:
        """Enqueue one job; options override the job type's defaults."""
        special = {k: options.pop(k) for k in ("at", "delay_s", "hold", "wait_for", "chain",
                                                "notifications", "job_id") if k in options}
        request = EnqueueRequest(name=name, args=args, options=options, **special)
        return (await self.enqueue_many([request]))[0]

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[JobRecord]:
        """Enqueue several jobs in one round trip; all are checked before any is written."""
        if not requests:
            return []
        now = self.clock()
        requests = [dataclasses.replace(r, wait_for=await self._open_dependencies(r.wait_for))
                    for r in requests]
        first = await self.counters.reserve_numbers(len(requests))
        webhooks = WebhookPolicy.from_config(self.config.notifier)
        docs = [build_document(r, first + i, self.origin, now, webhooks)
                for i, r in enumerate(requests)]
        waited_for = {dep for r in requests for dep in r.wait_for}
        if waited_for:  # before the insert: a dependency completing now must see it
            await self.jobs.mark_has_dependents(sorted(waited_for))
        await self.jobs.insert(docs)
        await self.jobs.relay_many(docs)
        return [JobRecord.from_document(d) for d in docs]

    async def _open_dependencies(self, wait_for: Sequence[ObjectId]) -> list[ObjectId]:
        """The dependencies not complete yet; refused if one is unknown or ended badly."""
        if not wait_for:
            return []
        states = await self.jobs.states_of(list(wait_for))
        for job_id in wait_for:
            state = states.get(job_id)
            if state is None:
                raise ValidationError(f"wait_for: no job {job_id}", field="wait_for")
            if state in FINAL and state != State.COMPLETE:
                raise ValidationError(f"wait_for: job {job_id} ended {state}",
                                      field="wait_for")
        return [j for j in wait_for if states[j] != State.COMPLETE]

    # Reading ----------------------------------------------------------------
    async def get(self, job: str | int | ObjectId) -> JobRecord:
        key = parse_job_id(job)
        doc = (await self.jobs.get_by_number(key) if isinstance(key, int)
               else await self.jobs.get(key))
        if doc is None:
            raise NotFound(f"no job {job}")
        return JobRecord.from_document(doc)

    async def list_jobs(self, spec: JobFilter | None = None, *, finished: bool = False,
                   skip: int = 0, limit: int = 50, sort: str = "number",
                   descending: bool = False) -> tuple[list[JobRecord], int]:
        docs, total = await self.jobs.page(spec or JobFilter(), finished=finished, skip=skip,
                                           limit=limit, sort=sort, descending=descending)
        return [JobRecord.from_document(d) for d in docs], total

    async def events(self, job: str | int | ObjectId) -> list[dict[str, Any]]:
        record = await self.get(job)
        return await self.jobs.events.for_job(record.id)

    # User operations --------------------------------------------------------
    async def _refused(self, job_id: ObjectId, action: str) -> TransitionRefused:
        doc = await self.jobs.get(job_id)
        if doc is None:
            return TransitionRefused(f"cannot {action} job {job_id}: it does not exist")
        extra = ""
        if doc.get("held") and action == "hold":
            extra = " and held already"
        elif not doc.get("held") and action == "resume":
            extra = " and not held"
        return TransitionRefused(f"cannot {action} job #{doc['number']}: it is {doc['state']}"
                                 f"{extra}", state=doc["state"])

    async def _user_transition(self, job: str | int | ObjectId, kind: EventName,
                               action: str, **kwargs: Any) -> dict[str, Any]:
        record = await self.get(job)
        doc = await self.jobs.transition(
            record.id, sources=[str(s) for s in sources_of(kind)], **kwargs)
        if doc is None:
            raise await self._refused(record.id, action)
        return doc

    async def hold(self, job: str | int | ObjectId) -> JobRecord:
        now = self.clock()
        record = await self.get(job)
        doc = await self._user_transition(
            record.id, EventName.HOLD_JOB, "hold", set_fields={"held": True},
            extra_filter={"held": False},
            event=self._event(EventName.HOLD_JOB, record.state, now))
        await self.jobs.relay(doc)
        return JobRecord.from_document(doc)

    async def resume(self, job: str | int | ObjectId) -> JobRecord:
        now = self.clock()
        record = await self.get(job)
        doc = await self._user_transition(
            record.id, EventName.RESUME_JOB, "resume", set_fields={"held": False},
            extra_filter={"held": True},
            event=self._event(EventName.RESUME_JOB, record.state, now))
        await self.jobs.relay(doc)
        return JobRecord.from_document(doc)

    async def kill(self, job: str | int | ObjectId) -> JobRecord:
        """Kill a job: a waiting one ends at once, a running one is stopped by its worker."""
        return await self._stop(job, EventName.KILL_JOB, EventName.REQUEST_KILL_JOB,
                                State.KILLED, "killed_at", "kill")

    async def remove(self, job: str | int | ObjectId) -> JobRecord:
        """Cancel a job: a waiting one leaves at once, a running one is stopped first."""
        return await self._stop(job, EventName.REMOVE_JOB, EventName.REQUEST_REMOVE_JOB,
                                State.REMOVED, "removed_at", "remove")

    async def _stop(self, job: str | int | ObjectId, done: EventName, request: EventName,
                    target: State, flag: str, action: str) -> JobRecord:
        record = await self.get(job)
        # A worker may put the running job back to waiting (or claim the waiting one)
        # between two writes here: each write decides, and a miss tries the other.
        for _ in range(3):
            now = self.clock()
            doc = await self.jobs.transition(
                record.id, sources=[str(s) for s in WAITING],
                set_fields={"state": str(target), flag: now, "finished_at": now},
                event=self._event(done, target, now))
            if doc is not None:
                await self._finish(doc)
                return JobRecord.from_document(doc)
            doc = await self.jobs.transition(
                record.id, sources=[str(State.RUNNING)], set_fields={flag: now},
                extra_filter={flag: None}, event=self._event(request, State.RUNNING, now))
            if doc is not None:
                await self.jobs.relay(doc)
                return JobRecord.from_document(doc)
            current = await self.jobs.get(record.id)
            if current is None or current["state"] not in QUEUED or current.get(flag):
                break
        raise await self._refused(record.id, action)

    async def restart(self, job: str | int | ObjectId) -> JobRecord:
        """A waiting job runs now; a stopped one is enqueued again as a new job linked
        to the old one (``parent_id`` / ``child_id``). Returns the job that will run."""
        now = self.clock()
        record = await self.get(job)
        if record.state in WAITING:
            doc = await self._user_transition(
                record.id, EventName.RESTART_WAITING, "restart",
                set_fields={"state": str(State.PENDING), "query_at": now, "held": False},
                event=self._event(EventName.RESTART_WAITING, State.PENDING, now))
            await self.jobs.relay(doc)
            return JobRecord.from_document(doc)
        if record.state not in STOPPED:
            raise TransitionRefused(f"cannot restart job #{record.number}: it is "
                                    f"{record.state}", state=str(record.state))
        child_id = record.child_id
        if child_id is None:
            child_id = ObjectId()
            old = await self.jobs.update_journal(
                record.id, {"state": {"$in": [str(s) for s in STOPPED]}, "child_id": None},
                {"$set": {"child_id": child_id},
                 "$push": {"outbox": self._event(EventName.RESTART_STOPPED, record.state, now,
                                                 child_id=str(child_id))}})
            if old is None:  # restarted meanwhile by someone else: theirs is the child
                return await self.restart(record.id)
            await self.jobs.relay(old, journal=True)
        existing = await self.jobs.get(child_id)
        if existing is not None:  # restarting again gives the same child
            return JobRecord.from_document(existing)
        options = {k: v for k, v in record.options.items()
                   if k not in ("zombie_time_s",) or v is not None}
        request = EnqueueRequest(name=record.name, args=record.args, job_id=child_id,
                                 notifications=record.notifications,
                                 options={"priority": record.priority,
                                          "attempts": record.attempts,
                                          **{k: v for k, v in options.items() if v is not None}})
        queue = Queue(self.store, self.config, author=self.author, clock=self.clock,
                      origin=Origin(by=self.author, origin="restart", parent_id=record.id))
        return (await queue.enqueue_many([request]))[0]

    # Worker operations ------------------------------------------------------
    async def claim(self, worker: WorkerRef, *, pool: str = "default",
                    tags: Sequence[str] = (), exclude_names: Sequence[str] = ()
                    ) -> Claim | None:
        """Take the most urgent job this worker may run, or None."""
        excluded = list(exclude_names)
        for _ in range(3):
            now = self.clock()
            full = await self._full_names()
            query: dict[str, Any] = {
                "state": {"$in": [str(s) for s in WAITING]}, "query_at": {"$lte": now},
                "held": False, "blocked": False, "pool": pool,
                "killed_at": None, "removed_at": None,
                "tags": {"$not": {"$elemMatch": {"$nin": list(tags)}}},
            }
            if excluded or full:
                query["name"] = {"$nin": excluded + full}
            token = secrets.token_hex(12)
            lock = {"worker": worker.id, "host": worker.host, "pid": worker.pid, "at": now,
                    "heartbeat": now, "token": token,
                    "expires": now + timedelta(seconds=self.config.queue.zombie_time_s)}
            event = self._event(EventName.REQUEST_START_JOB, State.RUNNING, now,
                                author=worker.id, worker=worker.id)
            doc = await self.jobs.claim(query, {
                "$set": {"state": str(State.RUNNING), "locked": lock, "zombie_at": None,
                         "wall_at": None},
                "$inc": {"attempts_left": -1},
                "$push": {"outbox": event}})
            if doc is None:
                return None
            if isinstance(doc.get("query_at"), datetime):
                annotate(doc, event["_id"], waited_s=seconds_between(doc["query_at"], now))
            try:
                await self.jobs.relay(doc)
            except DatabaseUnavailable as exc:
                # the job is ours now: a worker that dropped it for want of its event
                # would leave it to the sweep a whole lease later; the outbox keeps
                # the event, and the sweep relays it
                log.warning("job #%s: relaying its claim failed (%s); the sweep will",
                            doc["number"], exc, extra={"action": "relay_deferred"})
            if doc.get("max_parallel") and not await self.counters.take_slot(
                    doc["name"], doc["max_parallel"], doc["_id"], now):
                await self.release(doc["_id"], token, "max parallel reached")
                excluded.append(doc["name"])
                continue
            return Claim(JobRecord.from_document(doc), token)
        return None

    async def _full_names(self) -> list[str]:
        """Job names whose parallel slots are all taken, read at most once a second: a
        stale answer costs only a release, since `take_slot` decides."""
        stamp = time.monotonic()
        if stamp - self._full_checked > FULL_NAMES_TTL_S:
            self._full = await self.counters.full_names()
            self._full_checked = stamp
        return self._full

    async def _worker_transition(self, job_id: ObjectId, token: str, kind: EventName,
                                 **kwargs: Any) -> dict[str, Any]:
        doc = await self.jobs.transition(job_id, sources=[str(State.RUNNING)], token=token,
                                         **kwargs)
        if doc is None:
            current = await self.jobs.get(job_id)
            state = current["state"] if current else "gone"
            raise LeaseLost(f"job {job_id}: {kind.value} refused, the lease is lost "
                            f"(the job is {state})")
        return doc

    async def _leased(self, job_id: ObjectId, token: str, kind: EventName) -> dict[str, Any]:
        current = await self.jobs.get(job_id)
        if current is None or (current.get("locked") or {}).get("token") != token:
            raise LeaseLost(f"job {job_id}: {kind.value} refused, the lease is lost")
        return current

    async def release(self, job_id: ObjectId, token: str, reason: str) -> JobRecord:
        """Give a claimed job back unstarted; the attempt does not count."""
        now = self.clock()
        doc = await self._requeue(
            job_id, token, EventName.RELEASE_JOB,
            set_fields={"state": str(State.PENDING), "locked": None, "query_at": now},
            inc={"attempts_left": 1},
            event=self._event(EventName.RELEASE_JOB, State.PENDING, now, reason=reason))
        return JobRecord.from_document(doc)

    async def _requeue(self, job_id: ObjectId, token: str, kind: EventName,
                       **kwargs: Any) -> dict[str, Any]:
        """A worker's write that puts its job back to waiting, decided by one
        conditional write: it misses when a kill or removal was asked for meanwhile,
        and the job then ends killed or removed instead (a job left waiting with
        ``killed_at`` set would be claimed by no one). The job after it."""
        doc = await self.jobs.transition(job_id, sources=[str(State.RUNNING)], token=token,
                                         extra_filter=NOT_STOPPED, **kwargs)
        if doc is None:
            current = await self._leased(job_id, token, kind)
            if current.get("state") != State.RUNNING:
                raise LeaseLost(f"job {job_id}: {kind.value} refused, the lease is lost "
                                f"(the job is {current.get('state')})")
            event, target = ((EventName.KILL_JOB, State.KILLED) if current.get("killed_at")
                             else (EventName.REMOVE_JOB, State.REMOVED))
            return await self._end_stopped(job_id, token, event, target)
        await self.jobs.relay(doc)
        await self._give_slot(doc)
        return doc

    async def start(self, job_id: ObjectId, token: str) -> JobRecord:
        now = self.clock()
        doc = await self._worker_transition(
            job_id, token, EventName.START_JOB, set_fields={"started_at": now},
            event=self._event(EventName.START_JOB, State.RUNNING, now))
        await self.jobs.relay(doc)
        return JobRecord.from_document(doc)

    async def progress(self, job_id: ObjectId, token: str, value: float,
                       message: str | None = None, data: dict[str, Any] | None = None) -> None:
        now = self.clock()
        value = min(1.0, max(0.0, float(value)))
        doc = await self._worker_transition(
            job_id, token, EventName.PROGRESS_JOB,
            set_fields={"progress": {"value": value, "message": message, "at": now},
                        "locked.heartbeat": now},
            event=self._event(EventName.PROGRESS_JOB, State.RUNNING, now, progress=value,
                              message=message, progress_data=data or {}))
        await self.jobs.relay(doc)

    async def heartbeat(self, worker_id: str, leases: Sequence[tuple[ObjectId, str]],
                        zombie_time_s: dict[ObjectId, float] | None = None) -> HeartbeatReply:
        """Refresh the leases of running jobs; which are to be killed, removed, or lost."""
        now = self.clock()
        default = self.config.queue.zombie_time_s
        times = {job_id: (zombie_time_s or {}).get(job_id) or default for job_id, _ in leases}
        await self.jobs.heartbeat(leases, now, times)
        return await self.check_leases(leases)

    async def check_leases(self, leases: Sequence[tuple[ObjectId, str]]) -> HeartbeatReply:
        """Which of these running jobs are to be killed, removed, or lost (one read)."""
        tokens = dict(leases)
        views = {d["_id"]: d for d in await self.jobs.lease_view(list(tokens))}
        kill, remove, lost = set(), set(), set()
        for job_id, token in tokens.items():
            view = views.get(job_id)
            if (view is None or view.get("state") != State.RUNNING
                    or (view.get("locked") or {}).get("token") != token):
                lost.add(job_id)
            elif view.get("killed_at"):
                kill.add(job_id)
            elif view.get("removed_at"):
                remove.add(job_id)
        return HeartbeatReply(frozenset(kill), frozenset(remove), frozenset(lost))

    async def complete(self, job_id: ObjectId, token: str, result: Any = None,
                       warnings: Sequence[str] = ()) -> JobRecord:
        now = self.clock()
        event = self._event(EventName.COMPLETE_JOB, State.COMPLETE, now)
        doc = await self._worker_transition(
            job_id, token, EventName.COMPLETE_JOB,
            set_fields={"state": str(State.COMPLETE), "finished_at": now, "result": result,
                        "warnings": list(warnings), "progress.value": 1.0},
            event=event)
        if isinstance(doc.get("started_at"), datetime):
            annotate(doc, event["_id"], runtime_s=seconds_between(doc["started_at"], now))
        await self._finish(doc)
        return JobRecord.from_document(doc)

    def _retry_delay_s(self, doc: dict[str, Any]) -> float:
        options = doc.get("options") or {}
        tried = max(1, doc["attempts"] - doc["attempts_left"])
        delay = float(options.get("retry_delay_s") or 0) * float(
            options.get("retry_backoff") or 1) ** (tried - 1)
        jitter = float(options.get("retry_jitter_s") or 0)
        return delay + (random.uniform(0, jitter) if jitter else 0.0)

    async def fail(self, job_id: ObjectId, token: str, error: str, *,
                   event: EventName = EventName.FAILED_JOB) -> JobRecord:
        """The job raised: it waits to retry while attempts are left, else ends in error."""
        now = self.clock()
        current = await self._leased(job_id, token, event)
        retry = current["attempts_left"] > 0
        target = State.FAILED if retry else State.ERROR
        fields: dict[str, Any] = {"state": str(target), "last_error": error, "locked": None}
        outcome = self._event(event, target, now, error=error,
                              attempts_left=current["attempts_left"])
        if retry:
            fields["query_at"] = now + timedelta(seconds=self._retry_delay_s(current))
            return JobRecord.from_document(await self._requeue(
                job_id, token, event, set_fields=fields, event=outcome))
        fields["finished_at"] = now
        doc = await self._worker_transition(job_id, token, event, set_fields=fields,
                                            event=outcome)
        await self._finish(doc)
        return JobRecord.from_document(doc)

    async def fail_start(self, job_id: ObjectId, token: str, error: str) -> JobRecord:
        """The job could not be started (import error, bad arguments)."""
        return await self.fail(job_id, token, error, event=EventName.FAILED_START)

    async def defer(self, job_id: ObjectId, token: str, reason: str,
                    delay_s: float | None = None) -> JobRecord:
        """Run the job again later; past its ``defer_max`` it becomes inactive."""
        now = self.clock()
        current = await self._leased(job_id, token, EventName.DEFER_JOB)
        options = current.get("options") or {}
        count = current.get("defer_count", 0) + 1
        defer_max = options.get("defer_max")
        if defer_max is not None and count > defer_max:
            doc = await self._worker_transition(
                job_id, token, EventName.INACTIVATE_JOB,
                set_fields={"state": str(State.INACTIVE), "finished_at": now,
                            "defer_count": count, "last_error": reason},
                event=self._event(EventName.INACTIVATE_JOB, State.INACTIVE, now,
                                  reason=reason))
            await self._finish(doc)
            return JobRecord.from_document(doc)
        wait_s = delay_s if delay_s is not None else float(options.get("defer_time_s") or 0)
        doc = await self._requeue(
            job_id, token, EventName.DEFER_JOB,
            set_fields={"state": str(State.DEFERRED), "locked": None, "defer_count": count,
                        "query_at": now + timedelta(seconds=wait_s)},
            inc={"attempts_left": 1},
            event=self._event(EventName.DEFER_JOB, State.DEFERRED, now, reason=reason))
        return JobRecord.from_document(doc)

    async def mark_killed(self, job_id: ObjectId, token: str) -> JobRecord:
        """The worker stopped the process of a job whose kill was requested."""
        return await self._mark_stopped(job_id, token, EventName.KILL_JOB, State.KILLED)

    async def mark_removed(self, job_id: ObjectId, token: str) -> JobRecord:
        return await self._mark_stopped(job_id, token, EventName.REMOVE_JOB, State.REMOVED)

    async def _mark_stopped(self, job_id: ObjectId, token: str, event: EventName,
                            target: State) -> JobRecord:
        return JobRecord.from_document(await self._end_stopped(job_id, token, event, target))

    async def _end_stopped(self, job_id: ObjectId, token: str, event: EventName,
                           target: State) -> dict[str, Any]:
        now = self.clock()
        doc = await self._worker_transition(
            job_id, token, event, set_fields={"state": str(target), "finished_at": now},
            event=self._event(event, target, now))
        await self._finish(doc)
        return doc

    async def flag_nonstop(self, job_id: ObjectId) -> JobRecord | None:
        """Flag a running job past its wall time (once)."""
        now = self.clock()
        doc = await self.jobs.transition(
            job_id, sources=[str(State.RUNNING)], set_fields={"wall_at": now},
            extra_filter={"wall_at": None},
            event=self._event(EventName.FLAG_NONSTOP, State.RUNNING, now))
        if doc is None:
            return None
        await self.jobs.relay(doc)
        return JobRecord.from_document(doc)

    # Finishing --------------------------------------------------------------
    async def _give_slot(self, doc: dict[str, Any]) -> None:
        if doc.get("max_parallel"):
            await self.counters.give_slot(doc["name"], doc["_id"])

    async def _finish(self, doc: dict[str, Any]) -> None:
        """Everything after a job reached a final state; safe to repeat after a crash."""
        await self.jobs.relay(doc, pull=False)
        await self._give_slot(doc)
        if doc["state"] == State.COMPLETE:
            await self._enqueue_chain(doc)
            if doc.get("has_dependents"):
                await self.jobs.unblock(doc["_id"])
        elif doc.get("has_dependents"):
            await self._fail_dependents(doc)
        if doc.get("started_at") and doc.get("finished_at") and doc.get("runtime") is None:
            doc = {**doc, "runtime": (doc["finished_at"] - doc["started_at"]).total_seconds()}
        await self.jobs.move_to_journal(doc, [str(s) for s in FINAL])

    async def _enqueue_chain(self, doc: dict[str, Any]) -> None:
        specs = doc.get("chain") or []
        if not specs:
            return
        known = await self.jobs.states_of([s["_id"] for s in specs])
        requests = [EnqueueRequest(name=s["name"], args=s["args"], options=s["options"],
                                   job_id=s["_id"], notifications=s.get("notifications", ()))
                    for s in specs if s["_id"] not in known]
        if requests:
            enqueued = doc.get("enqueued") or {}
            queue = Queue(self.store, self.config, author=enqueued.get("by"), clock=self.clock,
                          origin=Origin(by=enqueued.get("by"), origin="chain",
                                        parent_id=doc["_id"]))
            await queue.enqueue_many(requests)

    async def _fail_dependents(self, doc: dict[str, Any]) -> None:
        now = self.clock()
        reason = f"dependency #{doc['number']} ended {doc['state']}"
        for dependent in await self.jobs.dependents(doc["_id"]):
            failed = await self.jobs.transition(
                dependent["_id"], sources=[str(s) for s in WAITING],
                set_fields={"state": str(State.ERROR), "last_error": reason,
                            "finished_at": now},
                event=self._event(EventName.FAILED_JOB, State.ERROR, now, error=reason))
            if failed is not None:
                await self._finish(failed)

    # Sweeping ---------------------------------------------------------------
    async def sweep(self) -> SweepReport:
        """Repair what dead processes left: unrelayed events, unfinished moves,
        jobs of dead workers, jobs nobody would ever move on, leaked parallel slots,
        dependencies. Idempotent; every worker may run it at once."""
        now = self.clock()
        relayed = moved = zombies = unblocked = 0
        before = now - timedelta(seconds=RELAY_GRACE_S)
        for journal in (False, True):
            for doc in await self.jobs.with_outbox(before, journal=journal):
                await self.jobs.relay(doc, journal=journal)
                relayed += len(doc.get("outbox") or [])
        finished_before = now - timedelta(seconds=FINISH_GRACE_S)
        for doc in await self.jobs.in_states([str(s) for s in FINAL],
                                             finished_before=finished_before):
            await self._finish(doc)
            moved += 1
        for doc in await self.jobs.expired_leases(now):
            zombies += await self._recover(doc, now)
        moved += await self._sweep_stopped_waiting(now)
        unblocked += await self._sweep_dependencies()
        await self._sweep_slots(now)
        return SweepReport(relayed, moved, zombies, unblocked)

    async def _sweep_stopped_waiting(self, now: datetime) -> int:
        """End waiting jobs whose kill or removal was asked for: no worker claims
        them, so they would wait forever (left by a version without the conditional
        requeue, or written by hand)."""
        ended = 0
        for doc in await self.jobs.stopped_waiting([str(s) for s in WAITING]):
            event, target = ((EventName.KILL_JOB, State.KILLED) if doc.get("killed_at")
                             else (EventName.REMOVE_JOB, State.REMOVED))
            done = await self.jobs.transition(
                doc["_id"], sources=[str(s) for s in WAITING],
                set_fields={"state": str(target), "finished_at": now},
                event=self._event(event, target, now, author="sweeper"))
            if done is not None:
                log.warning("ended job #%s, left waiting with its %s asked for",
                            done["number"], "kill" if target == State.KILLED else "removal",
                            extra={"action": "stuck_job_ended", "job": str(done["_id"])})
                await self._finish(done)
                ended += 1
        return ended

    async def _recover(self, doc: dict[str, Any], now: datetime) -> int:
        token = doc["locked"]["token"]
        if doc.get("zombie_at") is None:
            flagged = await self.jobs.transition(
                doc["_id"], sources=[str(State.RUNNING)], token=token,
                set_fields={"zombie_at": now}, extra_filter={"zombie_at": None},
                event=self._event(EventName.FLAG_ZOMBIE, State.RUNNING, now, author="sweeper"))
            if flagged is None:
                return 0
            await self.jobs.relay(flagged)
            doc = flagged
        worker = doc["locked"]["worker"]
        recoveries = int(doc.get("recoveries") or 0)
        limit = self.config.queue.max_recoveries
        inc: dict[str, int] | None = None
        if doc.get("killed_at") or doc.get("removed_at"):
            event, target = ((EventName.KILL_JOB, State.KILLED) if doc.get("killed_at")
                             else (EventName.REMOVE_JOB, State.REMOVED))
            fields: dict[str, Any] = {"state": str(target), "finished_at": now}
            data: dict[str, Any] = {}
        elif recoveries < limit:
            # a lost worker is not the job's fault: the attempt its claim took is
            # given back, and recoveries have their own bound (queue.max_recoveries)
            event, target = EventName.RESET_JOB, State.PENDING
            fields = {"state": str(target), "locked": None, "query_at": now,
                      "last_error": f"worker {worker} stopped responding"}
            inc = {"attempts_left": 1, "recoveries": 1}
            data = {"recoveries": recoveries + 1, "max_recoveries": limit}
        else:
            event, target = EventName.RESET_JOB, State.ERROR
            fields = {"state": str(target), "finished_at": now,
                      "last_error": f"worker {worker} stopped responding, and the job was "
                                    f"recovered from lost workers {recoveries} times already "
                                    f"(queue.max_recoveries)"}
            data = {"recoveries": recoveries, "max_recoveries": limit}
        reset = await self.jobs.transition(
            doc["_id"], sources=[str(State.RUNNING)], token=token, set_fields=fields, inc=inc,
            event=self._event(event, target, now, author="sweeper", **data))
        if reset is None:
            return 0
        log.warning("recovered job #%s of a dead worker", reset["number"],
                    extra={"action": "reset_job", "job": str(reset["_id"]),
                           "state": reset["state"]})
        if target in FINAL:
            await self._finish(reset)
        else:
            await self.jobs.relay(reset)
            await self._give_slot(reset)
        return 1

    async def _sweep_dependencies(self) -> int:
        unblocked = 0
        for doc in await self.jobs.blocked():
            deps = list(doc.get("wait_for") or [])
            states = await self.jobs.states_of(deps)
            for dep in deps:
                state = states.get(dep)
                if state == State.COMPLETE:
                    await self.jobs.unblock(dep)
                    unblocked += 1
                elif state in FINAL:
                    finished = await self.jobs.get(dep)
                    if finished is not None:
                        await self._fail_dependents(finished)
        return unblocked

    async def _sweep_slots(self, now: datetime) -> None:
        for slot in await self.counters.slot_holders():
            stale = [h["job"] for h in slot.get("holders", [])
                     if h["at"] < now - timedelta(seconds=SLOT_GRACE_S)]
            if not stale:
                continue
            states = await self.jobs.states_of(stale)
            for job_id in stale:
                if states.get(job_id) != State.RUNNING:
                    await self.counters.give_slot(slot["name"], job_id)

    # Logs -------------------------------------------------------------------
    async def append_logs(self, job_id: ObjectId, lines: Sequence[dict[str, Any]]) -> None:
        """Store log lines ``{created, level, message, extra}`` of a job in one write."""
        await self.logs.append([{"job_id": job_id, **line} for line in lines])

    async def read_log(self, job: str | int | ObjectId, *, after: ObjectId | None = None,
                       skip: int = 0, limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        record = await self.get(job)
        return await self.logs.read(record.id, after=after, skip=skip, limit=limit)

    # Maintenance ------------------------------------------------------------
    async def maintenance(self) -> Maintenance:
        doc = await self.jobs.maintenance()
        return Maintenance(bool(doc.get("global")), frozenset(doc.get("names") or ()))

    async def set_maintenance(self, on: bool) -> None:
        await self.jobs.set_maintenance({"$set": {"global": bool(on)}})

    async def pause_name(self, name: str) -> None:
        await self.jobs.set_maintenance({"$addToSet": {"names": name}})

    async def resume_name(self, name: str) -> None:
        await self.jobs.set_maintenance({"$pull": {"names": name}})
