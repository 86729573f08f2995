"""Repairing what dead processes left behind: events not relayed, moves to the journal
cut short, jobs of dead workers (flagged zombie, then put back or ended), waiting jobs
whose kill was asked for, dependencies and parallel slots nobody released.

Every repair is a conditional write that a live writer's own write excludes, so a
sweep may run beside the writer and beside other sweeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monq.queue.context import QueueContext
from monq.queue.finishing import Finisher
from monq.queue.states import FINAL, TRANSITIONS, Action, State

log = logging.getLogger("monq.queue")

SWEEPER = "sweeper"  # the author of the sweep's events
RELAY_GRACE_S = 2.0
# A final job still in sys.queue is finished by its own writer right after the write
# (relay, chain, journal move); the sweep takes over only this long after, so it does
# not finish a second time what is being finished now.
FINISH_GRACE_S = 5.0
SLOT_GRACE_S = 10.0
STOPPED_BATCH = 100  # waiting jobs with a stop asked for, ended per read (see the sweep)


@dataclass(frozen=True)
class SweepReport:
    relayed: int = 0
    moved: int = 0
    zombies: int = 0
    unblocked: int = 0


class Sweeper:
    def __init__(self, ctx: QueueContext, finisher: Finisher) -> None:
        self.ctx = ctx
        self.finisher = finisher
        # whether this process looked once for waiting jobs with a stop asked for
        self._stopped_waiting_checked = False

    async def sweep(self) -> SweepReport:
        """Repair what dead processes left: unrelayed events, unfinished moves,
        jobs of dead workers, jobs nobody would ever move on, leaked parallel slots,
        dependencies. Idempotent; every worker may run it at once."""
        jobs = self.ctx.jobs
        now = self.ctx.clock()
        relayed = moved = zombies = 0
        before = now - timedelta(seconds=RELAY_GRACE_S)
        for journal in (False, True):
            # in bulk: a lazy enqueuer leaves every waiting job's enqueue_job event
            # (relayed) in its outbox, so a backlog brings many at once
            docs = await jobs.with_outbox(before, journal=journal)
            await jobs.relay_many(docs, journal=journal)
            relayed += sum(len(doc.get("outbox") or []) for doc in docs)
        finished_before = now - timedelta(seconds=FINISH_GRACE_S)
        final = [str(s) for s in FINAL]
        for doc in await jobs.stranded(now=now, final=final, finished_before=finished_before):
            if doc["state"] in final:
                await self.finisher.finish(doc)
                moved += 1
            else:
                zombies += await self._recover(doc, now)
        if not self._stopped_waiting_checked:
            moved += await self._end_all_stopped_waiting(now)
            self._stopped_waiting_checked = True
        unblocked = await self._sweep_dependencies()
        await self._sweep_slots(now)
        return SweepReport(relayed, moved, zombies, unblocked)

    async def _end_all_stopped_waiting(self, now: datetime) -> int:
        """End every waiting job with a stop asked for, a batch at a time, until a
        batch is not full or ends none (another sweep ended them meanwhile)."""
        waiting = [str(s) for s in TRANSITIONS[Action.KILL_WAITING].sources]
        ended = 0
        while True:
            docs = await self.ctx.jobs.stopped_waiting(waiting, limit=STOPPED_BATCH)
            batch = 0
            for doc in docs:
                batch += await self._end_stopped_waiting(doc, now)
            ended += batch
            if len(docs) < STOPPED_BATCH or batch == 0:
                return ended

    async def _end_stopped_waiting(self, doc: dict[str, Any], now: datetime) -> int:
        """End a waiting job whose kill or removal was asked for: no worker claims
        it, so it would wait forever. Monq writes none (every write that puts a job
        back to waiting misses when a stop was asked for); an older version could (a
        kill that landed between a sweep's read of a dead worker's job and its
        reset), and so can a hand."""
        action = Action.KILL_WAITING if doc.get("killed_at") else Action.REMOVE_WAITING
        done = await self.ctx.write(action, doc["_id"],
                                    self.ctx.event(action, now, author=SWEEPER),
                                    set_fields={"finished_at": now})
        if done is None:
            return 0
        log.warning("ended job #%s, left waiting with its %s asked for", done["number"],
                    "kill" if action == Action.KILL_WAITING else "removal",
                    extra={"action": "stuck_job_ended", "job": str(done["_id"])})
        await self.finisher.finish(done)
        return 1

    async def _recover(self, doc: dict[str, Any], now: datetime) -> int:
        """Flag a running job whose lease ran out a zombie, then put it back (or end it)."""
        token = doc["locked"]["token"]
        if doc.get("zombie_at") is None:
            flagged = await self.ctx.write(
                Action.FLAG_ZOMBIE, doc["_id"],
                self.ctx.event(Action.FLAG_ZOMBIE, now, author=SWEEPER),
                token=token, set_fields={"zombie_at": now})
            if flagged is None:
                return 0
            await self.ctx.jobs.relay(flagged)
            doc = flagged
        action, fields, inc, data = self._recovery(doc, now)
        reset = await self.ctx.write(
            action, doc["_id"], self.ctx.event(action, now, author=SWEEPER, **data),
            token=token, set_fields=fields, inc=inc)
        if reset is None:
            return 0
        log.warning("recovered job #%s of a dead worker", reset["number"],
                    extra={"action": "reset_job", "job": str(reset["_id"]),
                           "state": reset["state"]})
        if reset["state"] in FINAL:
            await self.finisher.finish(reset)
        else:
            await self.ctx.jobs.relay(reset)
            await self.finisher.give_slot(reset)
        return 1

    def _recovery(self, doc: dict[str, Any], now: datetime
                  ) -> tuple[Action, dict[str, Any], dict[str, int] | None, dict[str, Any]]:
        """What becomes of a zombie job: ended when a kill or removal was asked for,
        else put back while recoveries are left, else ended in error."""
        worker = doc["locked"]["worker"]
        recoveries = int(doc.get("recoveries") or 0)
        limit = self.ctx.config.queue.max_recoveries
        if doc.get("killed_at") or doc.get("removed_at"):
            action = Action.MARK_KILLED if doc.get("killed_at") else Action.MARK_REMOVED
            return action, {"finished_at": now}, None, {}
        if recoveries < limit:
            # a lost worker is not the job's fault: the attempt its claim took is
            # given back, and recoveries have their own bound (queue.max_recoveries)
            return (Action.RESET,
                    {"locked": None, "query_at": now,
                     "last_error": f"worker {worker} stopped responding"},
                    {"attempts_left": 1, "recoveries": 1},
                    {"recoveries": recoveries + 1, "max_recoveries": limit})
        return (Action.RESET_TO_ERROR,
                {"finished_at": now,
                 "last_error": f"worker {worker} stopped responding, and the job was "
                               f"recovered from lost workers {recoveries} times already "
                               f"(queue.max_recoveries)"},
                None, {"recoveries": recoveries, "max_recoveries": limit})

    async def _sweep_dependencies(self) -> int:
        unblocked = 0
        for doc in await self.ctx.jobs.blocked():
            deps = list(doc.get("wait_for") or [])
            states = await self.ctx.jobs.states_of(deps)
            for dep in deps:
                state = states.get(dep)
                if state == State.COMPLETE:
                    await self.ctx.jobs.unblock(dep)
                    unblocked += 1
                elif state in FINAL:
                    finished = await self.ctx.jobs.get(dep)
                    if finished is not None:
                        await self.finisher.fail_dependents(finished)
        return unblocked

    async def _sweep_slots(self, now: datetime) -> None:
        for slot in await self.ctx.counters.slot_holders():
            stale = [h["job"] for h in slot.get("holders", [])
                     if h["at"] < now - timedelta(seconds=SLOT_GRACE_S)]
            if not stale:
                continue
            states = await self.ctx.jobs.states_of(stale)
            for job_id in stale:
                if states.get(job_id) != State.RUNNING:
                    await self.ctx.counters.give_slot(slot["name"], job_id)
