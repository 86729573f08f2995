"""What people (and the scheduler, and jobs) do to jobs: enqueue, hold, resume, kill,
remove, restart.

Each is one conditional write of an `Action` (see `monq.queue.states.TRANSITIONS`);
no match raises `TransitionRefused` naming the job's current state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bson import ObjectId

from monq.core.errors import TransitionRefused
from monq.queue import reads
from monq.queue.context import Origin, QueueContext
from monq.queue.enqueue import EnqueueRequest, enqueue_many
from monq.queue.finishing import Finisher
from monq.queue.model import JobRecord
from monq.queue.states import TRANSITIONS, Action

ENQUEUE_FIELDS = ("at", "delay_s", "hold", "wait_for", "chain", "notifications", "job_id")
# A stop's two writes (end a waiting job, or ask its worker to stop the running one)
# each decide; a worker moving the job between them makes one miss, and the other is
# tried again, this many times.
STOP_TRIES = 3


async def find_job(ctx: QueueContext, job: str | int | ObjectId) -> JobRecord:
    """The job by id or number, queued or finished; `NotFound` when there is none."""
    return await reads.find_job(ctx.jobs, job)


class UserActions:
    def __init__(self, ctx: QueueContext, finisher: Finisher) -> None:
        self.ctx = ctx
        self.finisher = finisher

    async def enqueue(self, name: str, args: dict[str, Any] | None = None,
                      **options: Any) -> JobRecord:
        """Enqueue one job; options override the job type's defaults."""
        special = {k: options.pop(k) for k in ENQUEUE_FIELDS if k in options}
        request = EnqueueRequest(name=name, args=args, options=options, **special)
        return (await self.enqueue_many([request]))[0]

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[JobRecord]:
        """Enqueue several jobs in one round trip; all are checked before any is written."""
        return await enqueue_many(self.ctx, requests)

    async def _refused(self, job_id: ObjectId, action: Action) -> TransitionRefused:
        doc = await self.ctx.jobs.get(job_id)
        verb = str(action).split("_")[0]
        if doc is None:
            return TransitionRefused(f"cannot {verb} job {job_id}: it does not exist")
        extra = ""
        if doc.get("held") and action == Action.HOLD:
            extra = " and held already"
        elif not doc.get("held") and action == Action.RESUME:
            extra = " and not held"
        return TransitionRefused(f"cannot {verb} job #{doc['number']}: it is {doc['state']}"
                                 f"{extra}", state=doc["state"])

    async def _act(self, record: JobRecord, action: Action,
                   set_fields: dict[str, Any] | None = None) -> JobRecord:
        """A user's write that leaves the job queued: written and relayed, or refused."""
        now = self.ctx.clock()
        doc = await self.ctx.write(action, record.id,
                                   self.ctx.event(action, now, current=record.state),
                                   set_fields=set_fields)
        if doc is None:
            raise await self._refused(record.id, action)
        await self.ctx.jobs.relay(doc)
        return JobRecord.from_document(doc)

    async def hold(self, job: str | int | ObjectId) -> JobRecord:
        return await self._act(await find_job(self.ctx, job), Action.HOLD, {"held": True})

    async def resume(self, job: str | int | ObjectId) -> JobRecord:
        return await self._act(await find_job(self.ctx, job), Action.RESUME, {"held": False})

    async def kill(self, job: str | int | ObjectId) -> JobRecord:
        """Kill a job: a waiting one ends at once, a running one is stopped by its worker."""
        return await self._stop(job, Action.KILL_WAITING, Action.REQUEST_KILL, "killed_at")

    async def remove(self, job: str | int | ObjectId) -> JobRecord:
        """Cancel a job: a waiting one leaves at once, a running one is stopped first."""
        return await self._stop(job, Action.REMOVE_WAITING, Action.REQUEST_REMOVE,
                                "removed_at")

    async def _stop(self, job: str | int | ObjectId, end: Action, request: Action,
                    flag: str) -> JobRecord:
        record = await find_job(self.ctx, job)
        # A worker may put the running job back to waiting (or claim the waiting one)
        # between two writes here: each write decides, and a miss tries the other.
        for _ in range(STOP_TRIES):
            now = self.ctx.clock()
            doc = await self.ctx.write(end, record.id, self.ctx.event(end, now),
                                       set_fields={flag: now, "finished_at": now})
            if doc is not None:
                await self.finisher.finish(doc)
                return JobRecord.from_document(doc)
            doc = await self.ctx.write(request, record.id, self.ctx.event(request, now),
                                       set_fields={flag: now})
            if doc is not None:
                await self.ctx.jobs.relay(doc)
                return JobRecord.from_document(doc)
            current = await self.ctx.jobs.get(record.id)
            if current is None or current.get(flag) or not any(
                    current["state"] in TRANSITIONS[a].sources for a in (end, request)):
                break
        raise await self._refused(record.id, end)

    async def restart(self, job: str | int | ObjectId) -> JobRecord:
        """A waiting job runs now; a stopped one is enqueued again as a new job linked
        to the old one (``parent_id`` / ``child_id``). Returns the job that will run."""
        record = await find_job(self.ctx, job)
        if record.state in TRANSITIONS[Action.RESTART_WAITING].sources:
            return await self._act(record, Action.RESTART_WAITING,
                                   {"query_at": self.ctx.clock(), "held": False})
        if record.state not in TRANSITIONS[Action.RESTART_STOPPED].sources:
            raise TransitionRefused(f"cannot restart job #{record.number}: it is "
                                    f"{record.state}", state=str(record.state))
        return await self._restart_stopped(record)

    async def _restart_stopped(self, record: JobRecord) -> JobRecord:
        child_id = record.child_id
        if child_id is None:
            child_id = ObjectId()
            transition = TRANSITIONS[Action.RESTART_STOPPED]
            old = await self.ctx.jobs.set_restart_child(
                record.id, sources=[str(s) for s in transition.sources],
                requires=transition.requires, child_id=child_id,
                event=self.ctx.event(Action.RESTART_STOPPED, self.ctx.clock(),
                                     current=record.state, child_id=str(child_id)))
            if old is None:  # restarted meanwhile by someone else: theirs is the child
                return await self.restart(record.id)
            await self.ctx.jobs.relay(old, journal=True)
        existing = await self.ctx.jobs.get(child_id)
        if existing is not None:  # restarting again gives the same child
            return JobRecord.from_document(existing)
        options = {k: v for k, v in record.options.items()
                   if k not in ("zombie_time_s",) or v is not None}
        request = EnqueueRequest(name=record.name, args=record.args, job_id=child_id,
                                 notifications=record.notifications,
                                 options={"priority": record.priority,
                                          "attempts": record.attempts,
                                          **{k: v for k, v in options.items() if v is not None}})
        ctx = self.ctx.acting_for(self.ctx.author, Origin(by=self.ctx.author, origin="restart",
                                                          parent_id=record.id))
        return (await enqueue_many(ctx, [request]))[0]

