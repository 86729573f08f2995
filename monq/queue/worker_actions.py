"""What workers do to jobs: claim, start, progress, heartbeat, complete, fail, defer,
release, and end the jobs whose kill or removal was asked for.

Every write after the claim names the lease token the claim handed out: a worker
whose lease is gone (the sweep gave its job to another) matches nothing and gets
`LeaseLost`.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from monq.core.errors import DatabaseUnavailable, LeaseLost
from monq.core.group_commit import GroupCommit
from monq.core.store.jobs import VERSION, HeldWrite, next_version, version_of
from monq.core.times import as_utc
from monq.queue.context import QueueContext, seconds_between
from monq.queue.finishing import Finisher
from monq.queue.model import JobRecord
from monq.queue.states import TRANSITIONS, Action, State

log = logging.getLogger("monq.queue")

FULL_NAMES_TTL_S = 1.0
CLAIM_TRIES = 3  # claims given back because the name's parallel slots were all taken
# Workers that keep losing candidates to each other (all read the same most urgent
# jobs) pick at random among this many times the jobs they want, within the most
# urgent priority, for this long after the last loss; a worker alone keeps the
# strict order
CLAIM_SPREAD = 4
CONTENTION_MEMORY_S = 5.0
# a group of completes waits this share of the last group's write for company, at most
COMPLETE_LINGER_SHARE = 0.25
COMPLETE_LINGER_MAX_S = 0.005
# A job's complete is written with others only with none of these set on it as its
# worker holds it: what sets off more after the end (a chain, dependents, a parallel
# slot), or asks for another end (a kill or removal, a zombie flag), goes by
# `WorkerActions._write`, which reads what changed
PLAIN_COMPLETE_UNSET = ("chain", "has_dependents", "max_parallel", "killed_at",
                        "removed_at", "zombie_at")


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
class Started:
    """A job's process has started it: the event, made now, written later (by
    `WorkerActions.start`, or folded into the job's complete when it ends first)."""

    at: datetime
    event: dict[str, Any]


@dataclass(frozen=True)
class HeartbeatReply:
    kill: frozenset[ObjectId]
    remove: frozenset[ObjectId]
    lost: frozenset[ObjectId]


def annotate(doc: dict[str, Any], event_id: ObjectId, **figures: Any) -> None:
    """Add figures known only once the write returned (how long the job waited to be
    claimed, how long it ran) to the data of the event about to be relayed from the
    job's outbox. They are measurements for metrics, not part of the state change: an
    event relayed by a sweep after a crash goes out without them."""
    for event in doc.get("outbox") or []:
        if event.get("_id") == event_id:
            event["data"] = {**event.get("data", {}), **figures}


def retry_delay_s(doc: dict[str, Any]) -> float:
    """How long a failed job waits before its next attempt: the retry delay grown by
    the backoff per attempt made, plus jitter."""
    options = doc.get("options") or {}
    tried = max(1, doc["attempts"] - doc["attempts_left"])
    delay = float(options.get("retry_delay_s") or 0) * float(
        options.get("retry_backoff") or 1) ** (tried - 1)
    jitter = float(options.get("retry_jitter_s") or 0)
    return delay + (random.uniform(0, jitter) if jitter else 0.0)


def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """What ``$set`` of `path` (dotted: into embedded documents) does to `doc`."""
    *parents, last = path.split(".")
    for key in parents:
        child = doc.get(key)
        doc[key] = child = dict(child) if isinstance(child, dict) else {}
        doc = child
    doc[last] = value


def _claimable_as_is(doc: dict[str, Any]) -> bool:
    """Whether a claim may take the job as `doc` shows it (a state it may leave, the
    field values it requires: not held, blocked or stopped). A claim is fenced by the
    job's version, so a job that changed since is not taken anyway; one seen held
    and unchanged is held still."""
    claim = TRANSITIONS[Action.CLAIM]
    return doc.get("state") in claim.sources \
        and all(doc.get(key) == value for key, value in claim.requires.items())


def _due(doc: dict[str, Any], now: datetime) -> bool:
    due = doc.get("query_at")
    return isinstance(due, datetime) and as_utc(due) <= now


def spread_picks(candidates: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` of the candidates (in claim order: priority, then age), the more
    urgent priorities first and at random within one, in claim order: workers
    that read the same candidates then mostly pick different ones, and none takes
    a job while a more urgent one it read is left."""
    chosen: list[dict[str, Any]] = []
    start = 0
    while start < len(candidates) and len(chosen) < count:
        end = start
        while end < len(candidates) \
                and candidates[end]["priority"] == candidates[start]["priority"]:
            end += 1
        group = list(candidates[start:end])
        need = count - len(chosen)
        chosen.extend(group if len(group) <= need else random.sample(group, need))
        start = end
    rank = {doc["_id"]: i for i, doc in enumerate(candidates)}
    return sorted(chosen, key=lambda doc: rank[doc["_id"]])


@dataclass
class _Completing:
    """A complete waiting to be written with others (`WorkerActions.complete`)."""

    write: HeldWrite
    event: dict[str, Any]  # the complete's own
    after: dict[str, Any]  # the job after it, as its writer knows it
    drop: Sequence[ObjectId]  # the events relayed before it, in its outbox no more


class WorkerActions:
    def __init__(self, ctx: QueueContext, finisher: Finisher) -> None:
        self.ctx = ctx
        self.finisher = finisher
        self._full: list[str] = []
        self._full_checked = -FULL_NAMES_TTL_S
        self._slots_given = 0  # the finisher's count when `_full` was read
        # lazy_outbox: the running jobs this process holds, as its last write left
        # them (the document that write returned), and its completes, written
        # together (`_complete_soon`)
        self._held: dict[ObjectId, dict[str, Any]] = {}
        self._completes: GroupCommit[_Completing, dict[str, Any] | None] = GroupCommit(
            self._write_completes, linger=self._complete_linger_s)
        self._contended_until = 0.0  # `claim_many` spreads its picks until then
        ctx.keeps = self._held.__contains__

    def _saw(self, doc: dict[str, Any]) -> None:
        """Keep the job as this process's write left it (lazy_outbox), while it runs."""
        if doc.get("state") != State.RUNNING:
            self.forget(doc["_id"])
        elif self.ctx.lazy_outbox:
            self._held[doc["_id"]] = doc

    def forget(self, job_id: ObjectId) -> None:
        """The job is no longer this process's (its outcome written, its lease lost):
        nor is what its next write would have dropped from its outbox."""
        self._held.pop(job_id, None)
        self.ctx.relayed.pop(job_id, None)

    # Claiming -----------------------------------------------------------------
    async def claim(self, worker: WorkerRef, *, pool: str = "default",
                    tags: Sequence[str] = (), exclude_names: Sequence[str] = ()
                    ) -> Claim | None:
        """Take the most urgent job this worker may run, or None."""
        excluded = list(exclude_names)
        transition = TRANSITIONS[Action.CLAIM]
        for _ in range(CLAIM_TRIES):
            now = self.ctx.clock()
            token, fields, event = self._claim_write(worker, now)
            doc = await self.ctx.jobs.claim(
                sources=[str(s) for s in transition.sources], requires=transition.requires,
                now=now, pool=pool, tags=tags,
                excluded_names=excluded + await self._full_names(), events=[event],
                set_fields=fields)
            if doc is None:
                return None
            claim = await self._took(doc, token, event, now)
            if claim is not None:
                return claim
            excluded.append(doc["name"])
        return None

    async def claim_many(self, worker: WorkerRef, count: int, *, pool: str = "default",
                         tags: Sequence[str] = (), exclude_names: Sequence[str] = ()
                         ) -> list[Claim]:
        """Take up to `count` of the most urgent jobs this worker may run, in two
        round trips for any count (an indexed read of the candidates, one bulk of
        conditional updates, each with its own lease token and event; a third when
        another worker took some meanwhile), where `claim` takes one per round trip.
        Empty when none is left (or other workers kept taking them)."""
        if count <= 0:
            return []
        if count == 1:
            one = await self.claim(worker, pool=pool, tags=tags, exclude_names=exclude_names)
            return [one] if one is not None else []
        excluded = list(exclude_names)
        transition = TRANSITIONS[Action.CLAIM]
        sources = [str(s) for s in transition.sources]
        for _ in range(CLAIM_TRIES):
            now = self.ctx.clock()
            names = excluded + await self._full_names()
            spread = CLAIM_SPREAD if time.monotonic() < self._contended_until else 1
            candidates = await self.ctx.jobs.claim_candidates(
                sources=sources, requires=transition.requires, now=now, pool=pool,
                tags=tags, excluded_names=names, limit=count * spread)
            if not candidates:
                return []
            if spread > 1:
                candidates = spread_picks(candidates, count)
            claims, given_back = await self._take(worker, candidates, now)
            if claims:
                return claims
            # all taken by other workers meanwhile, or given back (parallel slots):
            # look again
            excluded.extend(given_back)
        return []

    async def claim_seen(self, worker: WorkerRef, seen: Sequence[dict[str, Any]], count: int,
                         *, pool: str = "default", tags: Sequence[str] = (),
                         exclude_names: Sequence[str] = ()) -> list[Claim]:
        """Take up to `count` of the jobs `seen` (as a change stream showed them
        inserted), the most urgent first, if this worker may run them (claimable as
        seen, due, of its pool, tags it has, a name not excluded) and they are as
        seen still: one bulk of updates fenced by each job's version, with no read
        before it (`claim_many` reads the candidates first). None in place of one
        another worker took."""
        if count <= 0 or not seen:
            return []
        now = self.ctx.clock()
        names = set(exclude_names) | set(await self._full_names())
        fits = [doc for doc in seen
                if _claimable_as_is(doc) and doc.get("pool") == pool
                and set(doc.get("tags") or ()) <= set(tags)
                and doc.get("name") not in names and _due(doc, now)]
        chosen = sorted(fits, key=lambda doc: (-doc["priority"], doc["_id"]))[:count]
        claims, _ = await self._take(worker, chosen, now)
        return claims

    async def _take(self, worker: WorkerRef, candidates: Sequence[dict[str, Any]],
                    now: datetime) -> tuple[list[Claim], list[str]]:
        """Claim the `candidates` (claimable by this worker when read) that still
        wait, each by its conditional update, in one bulk: the claims, and the names
        of jobs given back at once (their parallel slots all taken)."""
        if not candidates:
            return [], []
        writes = {doc["_id"]: (doc, *self._claim_write(worker, now)) for doc in candidates}
        taken = await self.ctx.jobs.claim_each(
            [(doc, fields, [event]) for doc, _, fields, event in writes.values()])
        if len(taken) < len(writes):  # other workers took some of the same
            self._contended_until = time.monotonic() + CONTENTION_MEMORY_S
        claims: list[Claim] = []
        given_back: list[str] = []
        for doc in taken:
            _, token, _, event = writes[doc["_id"]]
            claim = await self._took(doc, token, event, now)
            if claim is not None:
                claims.append(claim)
            else:
                given_back.append(doc["name"])
        return claims, given_back

    def _claim_write(self, worker: WorkerRef, now: datetime
                     ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """A claim's new lease token, the fields it sets and its event."""
        token = secrets.token_hex(12)
        lock = {"worker": worker.id, "host": worker.host, "pid": worker.pid, "at": now,
                "heartbeat": now, "token": token,
                "expires": now + timedelta(seconds=self.ctx.config.queue.zombie_time_s)}
        event = self.ctx.event(Action.CLAIM, now, author=worker.id, worker=worker.id)
        fields = {"state": str(TRANSITIONS[Action.CLAIM].target), "locked": lock,
                  "zombie_at": None, "wall_at": None}
        return token, fields, event

    async def _took(self, doc: dict[str, Any], token: str, event: dict[str, Any],
                    now: datetime) -> Claim | None:
        """A job just claimed: its events relayed, its parallel slot taken; None (the
        job released again) when the name's slots were all taken."""
        if isinstance(doc.get("query_at"), datetime):
            annotate(doc, event["_id"], waited_s=seconds_between(doc["query_at"], now))
        try:
            await self.ctx.relay(doc)
        except DatabaseUnavailable as exc:
            # the job is ours now: a worker that dropped it for want of its event
            # would leave it to the sweep a whole lease later; the outbox keeps
            # the event, and the sweep relays it
            log.warning("job #%s: relaying its claim failed (%s); the sweep will",
                        doc["number"], exc, extra={"action": "relay_deferred"})
        self._saw(doc)
        if doc.get("max_parallel") and not await self.ctx.counters.take_slot(
                doc["name"], doc["max_parallel"], doc["_id"], now):
            await self.release(doc["_id"], token, "max parallel reached")
            return None
        return Claim(JobRecord.from_document(doc), token)

    async def next_due(self, pool: str = "default") -> datetime | None:
        """When the next job of the pool that nothing holds back is due (None: no job
        waits). It may be one this worker cannot take (tags, a paused name)."""
        transition = TRANSITIONS[Action.CLAIM]
        return await self.ctx.jobs.next_due(sources=[str(s) for s in transition.sources],
                                            requires=transition.requires, pool=pool)

    async def _full_names(self) -> list[str]:
        """Job names whose parallel slots are all taken, read at most once a second: a
        stale answer costs only a release, since `take_slot` decides."""
        stamp = time.monotonic()
        if stamp - self._full_checked > FULL_NAMES_TTL_S \
                or self._slots_given != self.finisher.slots_given:
            # this process gave a slot back since: the name may have room again
            self._slots_given = self.finisher.slots_given
            self._full = await self.ctx.counters.full_names()
            self._full_checked = stamp
        return self._full

    def parallel_full(self) -> bool:
        """Whether the last claim left out jobs because all slots of their name were
        taken (nothing in sys.queue changes when a slot is given back)."""
        return bool(self._full)

    # Writes on a held job -------------------------------------------------------
    async def _write(self, action: Action, job_id: ObjectId, token: str,
                     event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        doc = await self.ctx.write(action, job_id, event, token=token, **kwargs)
        if doc is None:
            self.forget(job_id)
            current = await self.ctx.jobs.get(job_id)
            state = current["state"] if current else "gone"
            raise LeaseLost(f"job {job_id}: {action} refused, the lease is lost "
                            f"(the job is {state})")
        self._saw(doc)
        return doc

    async def _leased(self, job_id: ObjectId, token: str, action: Action) -> dict[str, Any]:
        current = await self.ctx.jobs.get(job_id)
        if current is None or (current.get("locked") or {}).get("token") != token:
            raise LeaseLost(f"job {job_id}: {action} refused, the lease is lost")
        return current

    async def _requeue(self, action: Action, job_id: ObjectId, token: str,
                       event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """A worker's write that puts its job back to waiting. Its transition requires
        that no kill or removal was asked for: when one was, it misses, and the job
        ends killed or removed instead. The job after it."""
        doc = await self.ctx.write(action, job_id, event, token=token, **kwargs)
        if doc is None:
            current = await self._leased(job_id, token, action)
            if current.get("state") != State.RUNNING:
                raise LeaseLost(f"job {job_id}: {action} refused, the lease is lost "
                                f"(the job is {current.get('state')})")
            stop = Action.MARK_KILLED if current.get("killed_at") else Action.MARK_REMOVED
            return await self._end(stop, job_id, token)
        self._saw(doc)
        await self.ctx.relay(doc, leaving=True)
        await self.finisher.give_slot(doc)
        return doc

    async def _end(self, action: Action, job_id: ObjectId, token: str,
                   event: dict[str, Any] | None = None,
                   set_fields: dict[str, Any] | None = None) -> dict[str, Any]:
        """A worker's write that ends its job, and the finishing after it."""
        now = self.ctx.clock()
        doc = await self._write(action, job_id, token, event or self.ctx.event(action, now),
                                set_fields={"finished_at": now, **(set_fields or {})})
        await self.finisher.finish(doc)
        return doc

    async def release(self, job_id: ObjectId, token: str, reason: str) -> JobRecord:
        """Give a claimed job back unstarted; the attempt does not count."""
        now = self.ctx.clock()
        doc = await self._requeue(
            Action.RELEASE, job_id, token,
            self.ctx.event(Action.RELEASE, now, reason=reason),
            set_fields={"locked": None, "query_at": now}, inc={"attempts_left": 1})
        return JobRecord.from_document(doc)

    def started(self, at: datetime | None = None) -> Started:
        """The start of a job, at `at` (its process's clock) or now, not written yet."""
        now = at or self.ctx.clock()
        return Started(now, self.ctx.event(Action.START, now))

    async def start(self, job_id: ObjectId, token: str,
                    started: Started | None = None) -> JobRecord:
        """Write that the job's process has started it (now, or at `started`)."""
        started = started or self.started()
        doc = await self._write(Action.START, job_id, token, started.event,
                                set_fields={"started_at": started.at})
        await self.ctx.relay(doc)
        return JobRecord.from_document(doc)

    def _progress(self, now: datetime, value: float, message: str | None,
                  data: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The event and the fields of a progress report."""
        value = min(1.0, max(0.0, float(value)))
        event = self.ctx.event(Action.PROGRESS, now, progress=value, message=message,
                               progress_data=data or {})
        return event, {"progress": {"value": value, "message": message, "at": now},
                       "locked.heartbeat": now}

    async def progress(self, job_id: ObjectId, token: str, value: float,
                       message: str | None = None, data: dict[str, Any] | None = None) -> None:
        now = self.ctx.clock()
        event, fields = self._progress(now, value, message, data)
        doc = await self._write(Action.PROGRESS, job_id, token, event, set_fields=fields)
        await self.ctx.relay(doc)

    async def complete(self, job_id: ObjectId, token: str, result: Any = None,
                       warnings: Sequence[str] = (),
                       progress: tuple[float, str | None, dict[str, Any]] | None = None,
                       started: Started | None = None) -> JobRecord:
        """The job succeeded. Its start (`started`) and its last progress report
        (`progress`: value, message, data), if not written yet, go into the same
        write, their events before."""
        now = self.ctx.clock()
        fields: dict[str, Any] = {"finished_at": now, "result": result,
                                  "warnings": list(warnings)}
        before: list[dict[str, Any]] = []
        if started is not None:
            before.append(started.event)
            fields["started_at"] = started.at
        if progress is not None:  # its event first: event ids follow creation
            reported, progress_fields = self._progress(now, *progress)
            before.append(reported)
            fields["progress"] = {**progress_fields["progress"], "value": 1.0}
        else:
            fields["progress.value"] = 1.0
        event = self.ctx.event(Action.COMPLETE, now)
        doc = await self._complete_soon(job_id, token, event, fields, before)
        if doc is None:
            doc = await self._write(Action.COMPLETE, job_id, token, event,
                                    set_fields=fields, more_events=before)
            await self._finish_complete(doc, event, now)
        return JobRecord.from_document(doc)

    async def _finish_complete(self, doc: dict[str, Any], event: dict[str, Any],
                               now: datetime) -> None:
        if isinstance(doc.get("started_at"), datetime):
            annotate(doc, event["_id"], runtime_s=seconds_between(doc["started_at"], now))
        await self.finisher.finish(doc)

    async def _complete_soon(self, job_id: ObjectId, token: str, event: dict[str, Any],
                             fields: dict[str, Any], before: list[dict[str, Any]]
                             ) -> dict[str, Any] | None:
        """With ``lazy_outbox``, a job that nothing else waits for (none of
        `PLAIN_COMPLETE_UNSET` set) completes at once, in one bulk of updates with
        the other jobs of this process that complete while that write is under way
        (a group commit: no wait when there is nothing to wait for), each fenced by
        the version this process's last write left; their events and moves then go
        out with the next write of events and moves. The job after it; None when
        this process does not know the job as it is (another writer changed it),
        for a write of its own."""
        held = self._held.get(job_id)
        if (held is None or held.get("state") != State.RUNNING
                or (held.get("locked") or {}).get("token") != token
                or any(held.get(flag) for flag in PLAIN_COMPLETE_UNSET)):
            return None
        events = sorted([*before, event], key=lambda e: e["_id"])
        drop = self.ctx.relayed.pop(job_id, [])
        set_fields = {**fields, "state": str(TRANSITIONS[Action.COMPLETE].target)}
        after = dict(held)
        for path, value in set_fields.items():
            _set_path(after, path, value)
        after["outbox"] = [e for e in held.get("outbox") or [] if e["_id"] not in drop]
        after["outbox"].extend(events)
        after[VERSION] = next_version(held)
        write = HeldWrite(job_id, version_of(held), set_fields, after["outbox"], event["_id"])
        try:
            return await self._completes.submit(_Completing(write, event, after, drop))
        except BaseException:
            self.ctx.relayed.setdefault(job_id, []).extend(drop)  # dropped or not: unknown
            raise

    def _complete_linger_s(self) -> float:
        """How long a write of completes first waits for other slots' completes to
        join it: a fraction of what the last one took, at most
        `COMPLETE_LINGER_MAX_S` (little beside the write, on a slow server as on a
        fast one)."""
        return min(COMPLETE_LINGER_MAX_S,
                   self._completes.last_write_s * COMPLETE_LINGER_SHARE)

    async def _write_completes(self, batch: list[_Completing]
                               ) -> list[dict[str, Any] | BaseException | None]:
        """Write the completes waiting (`_complete_soon`) in one bulk, and finish the
        jobs written: their events and moves join the write under way. For each, the
        job after it, or None when another writer changed it (its writer writes it
        alone); a failure goes to each complete's writer, which tries again."""
        written = await self.ctx.jobs.transition_unchanged([c.write for c in batch])
        results: list[dict[str, Any] | BaseException | None] = []
        for c in batch:
            job_id = c.write.job_id
            if job_id not in written:
                self.ctx.relayed.setdefault(job_id, []).extend(c.drop)
                results.append(None)
                continue
            self.forget(job_id)
            try:  # what follows a plain job's complete waits in memory: no I/O here
                await self._finish_complete(c.after, c.event, c.after["finished_at"])
            except Exception as exc:  # the complete is written; the sweep finishes it
                log.exception("job %s: finishing after its complete failed", job_id,
                              extra={"action": "finish_failed"})
                results.append(exc)
                continue
            results.append(c.after)
        return results

    async def fail(self, job_id: ObjectId, token: str, error: str, *,
                   at_start: bool = False) -> JobRecord:
        """The job raised: it waits to retry while attempts are left, else ends in error."""
        now = self.ctx.clock()
        current = await self._leased(job_id, token, Action.FAIL_START if at_start
                                     else Action.FAIL)
        if current["attempts_left"] > 0:
            action = Action.RETRY_START if at_start else Action.RETRY
            event = self.ctx.event(action, now, error=error,
                                   attempts_left=current["attempts_left"])
            return JobRecord.from_document(await self._requeue(
                action, job_id, token, event,
                set_fields={"last_error": error, "locked": None,
                            "query_at": now + timedelta(seconds=retry_delay_s(current))}))
        action = Action.FAIL_START if at_start else Action.FAIL
        event = self.ctx.event(action, now, error=error, attempts_left=current["attempts_left"])
        return JobRecord.from_document(await self._end(
            action, job_id, token, event, {"last_error": error, "locked": None}))

    async def fail_start(self, job_id: ObjectId, token: str, error: str) -> JobRecord:
        """The job could not be started (import error, bad arguments)."""
        return await self.fail(job_id, token, error, at_start=True)

    async def defer(self, job_id: ObjectId, token: str, reason: str,
                    delay_s: float | None = None) -> JobRecord:
        """Run the job again later; past its ``defer_max`` it becomes inactive."""
        now = self.ctx.clock()
        current = await self._leased(job_id, token, Action.DEFER)
        options = current.get("options") or {}
        count = current.get("defer_count", 0) + 1
        defer_max = options.get("defer_max")
        if defer_max is not None and count > defer_max:
            return JobRecord.from_document(await self._end(
                Action.INACTIVATE, job_id, token,
                self.ctx.event(Action.INACTIVATE, now, reason=reason),
                {"defer_count": count, "last_error": reason}))
        wait_s = delay_s if delay_s is not None else float(options.get("defer_time_s") or 0)
        doc = await self._requeue(
            Action.DEFER, job_id, token, self.ctx.event(Action.DEFER, now, reason=reason),
            set_fields={"locked": None, "defer_count": count,
                        "query_at": now + timedelta(seconds=wait_s)},
            inc={"attempts_left": 1})
        return JobRecord.from_document(doc)

    async def mark_killed(self, job_id: ObjectId, token: str) -> JobRecord:
        """The worker stopped the process of a job whose kill was requested."""
        return JobRecord.from_document(await self._end(Action.MARK_KILLED, job_id, token))

    async def mark_removed(self, job_id: ObjectId, token: str) -> JobRecord:
        return JobRecord.from_document(await self._end(Action.MARK_REMOVED, job_id, token))

    async def flag_nonstop(self, job_id: ObjectId) -> JobRecord | None:
        """Flag a running job past its wall time (once)."""
        now = self.ctx.clock()
        doc = await self.ctx.write(Action.FLAG_NONSTOP, job_id,
                                   self.ctx.event(Action.FLAG_NONSTOP, now),
                                   set_fields={"wall_at": now})
        if doc is None:
            return None
        if job_id in self._held:
            self._saw(doc)
        await self.ctx.relay(doc)
        return JobRecord.from_document(doc)

    # Leases -------------------------------------------------------------------
    async def heartbeat(self, worker_id: str, leases: Sequence[tuple[ObjectId, str]],
                        zombie_time_s: dict[ObjectId, float] | None = None) -> HeartbeatReply:
        """Refresh the leases of running jobs; which are to be killed, removed, or lost."""
        now = self.ctx.clock()
        default = self.ctx.config.queue.zombie_time_s
        times = {job_id: (zombie_time_s or {}).get(job_id) or default for job_id, _ in leases}
        await self.ctx.jobs.heartbeat(leases, now, times)
        reply = await self.check_leases(leases)
        for job_id, _ in leases:  # as held (lazy_outbox): its journal copy comes from it
            doc = self._held.get(job_id)
            if doc is not None and job_id not in reply.lost \
                    and isinstance(doc.get("locked"), dict):
                doc["locked"] = {**doc["locked"], "heartbeat": now,
                                 "expires": now + timedelta(seconds=times[job_id])}
        return reply

    async def check_leases(self, leases: Sequence[tuple[ObjectId, str]]) -> HeartbeatReply:
        """Which of these running jobs are to be killed, removed, or lost (one read)."""
        tokens = dict(leases)
        views = {d["_id"]: d for d in await self.ctx.jobs.lease_view(list(tokens))}
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

    # Logs ---------------------------------------------------------------------
    async def append_logs(self, job_id: ObjectId, lines: Sequence[dict[str, Any]]) -> None:
        """Store log lines ``{created, level, message, extra}`` of a job in one write."""
        await self.ctx.logs.append([{"job_id": job_id, **line} for line in lines])
