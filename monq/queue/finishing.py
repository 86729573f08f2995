"""Finishing a job: everything after it reached a final state (its event relayed, its
parallel slot given back, its chain enqueued, its dependents freed or failed) and its
move to sys.journal. Every step is safe to repeat: the sweep repeats them for a
writer that died half-way.
"""

from __future__ import annotations

from typing import Any

from monq.queue.context import Origin, QueueContext
from monq.queue.enqueue import EnqueueRequest, enqueue_many
from monq.queue.states import Action, State


class Finisher:
    def __init__(self, ctx: QueueContext) -> None:
        self.ctx = ctx
        self.slots_given = 0  # by this process: a claim's view of full names is stale

    async def give_slot(self, doc: dict[str, Any]) -> None:
        """Give back the job's parallel slot, if its name has a limit."""
        if doc.get("max_parallel"):
            await self.ctx.counters.give_slot(doc["name"], doc["_id"])
            self.slots_given += 1

    async def finish(self, doc: dict[str, Any]) -> None:
        """Everything after a job reached a final state; safe to repeat after a crash."""
        jobs = self.ctx.jobs
        await self.ctx.relay_final(doc)
        await self.give_slot(doc)
        if doc["state"] == State.COMPLETE:
            await self._enqueue_chain(doc)
            if doc.get("has_dependents"):
                await jobs.unblock(doc["_id"])
        elif doc.get("has_dependents"):
            await self.fail_dependents(doc)
        if doc.get("started_at") and doc.get("finished_at") and doc.get("runtime") is None:
            doc = {**doc, "runtime": (doc["finished_at"] - doc["started_at"]).total_seconds()}
        await self.ctx.move_to_journal(doc)

    async def _enqueue_chain(self, doc: dict[str, Any]) -> None:
        specs = doc.get("chain") or []
        if not specs:
            return
        known = await self.ctx.jobs.states_of([s["_id"] for s in specs])
        requests = [EnqueueRequest(name=s["name"], args=s["args"], options=s["options"],
                                   job_id=s["_id"], notifications=s.get("notifications", ()))
                    for s in specs if s["_id"] not in known]
        if requests:
            by = (doc.get("enqueued") or {}).get("by")
            await enqueue_many(self.ctx.acting_for(
                by, Origin(by=by, origin="chain", parent_id=doc["_id"])), requests)

    async def fail_dependents(self, doc: dict[str, Any]) -> None:
        """End in error the jobs waiting for this one, which ended other than complete."""
        now = self.ctx.clock()
        reason = f"dependency #{doc['number']} ended {doc['state']}"
        for dependent in await self.ctx.jobs.dependents(doc["_id"]):
            failed = await self.ctx.write(
                Action.FAIL_DEPENDENT, dependent["_id"],
                self.ctx.event(Action.FAIL_DEPENDENT, now, error=reason),
                set_fields={"last_error": reason, "finished_at": now})
            if failed is not None:
                await self.finish(failed)
