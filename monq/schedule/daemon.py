"""The scheduler service: enqueues each due tick of each schedule exactly once,
however many schedulers run, without a leader and without transactions.

Once per ``scheduler.interval_s`` a scheduler reads the enabled schedules whose
``next_at`` has come (index ``due``), plans each with `monq.schedule.cron.plan`
(catch-up policy and cap, jitter) and then:

1. **Claims** the planned ticks with one compare-and-set on the schedule
   (`ScheduleStore.advance`): the filter names the ``next_tick`` and ``etag`` it
   planned from, the update moves ``next_tick`` on and pushes one outbox entry per
   tick onto ``pending``, each with a job id fixed now and the claimer's token.
   Of several schedulers planning the same tick, exactly one update matches; the
   others find ``next_tick`` moved and do nothing. The tick is now recorded and
   cannot be planned again, by anyone, after any restart.
2. **Enqueues** each entry's job under its fixed id (with origin ``scheduler`` and
   the schedule and tick in ``enqueued``), after checking that it still holds the
   entry. A duplicate id is a no-op.
3. **Pulls** the entry.

A SIGKILL after 1 leaves the entry in ``pending``; one after 2 leaves the entry
and the job. Entries claimed more than ``scheduler.stale_s`` ago are taken over by
any scheduler (a compare-and-set replacing the token, index
``pending_claimed``), which first looks for the job in sys.queue and *then* in
sys.journal: a finished job reaches the journal before it leaves the queue, so a
job inserted before the first look is found by one of them, and the entry is
only pulled. Otherwise the job is enqueued as in 2. A tick is therefore never
lost, and enqueued twice only if the claimer stalls (alive, not killed) for more
than ``stale_s`` between its last check of the token and its insert, while the
job it would duplicate runs to the end in that gap: the usual assumption of every
lease.

Overlap: with policy ``skip`` a tick whose schedule's previous job is still in
sys.queue (waiting, running, held) is recorded as skipped instead. Disabled
schedules are not due; enabling one starts from the next tick after now.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from monq.core.config import Config
from monq.core.errors import BadRequest, Conflict, DatabaseUnavailable, Error, NotFound
from monq.core.loops import periodic
from monq.core.services import wait_for_database
from monq.core.store import Store
from monq.core.store.jobs import JobStore
from monq.core.store.schedules import ScheduleStore
from monq.queue.enqueue import EnqueueRequest, Origin
from monq.queue.queue import Queue
from monq.schedule import cron
from monq.schedule.service import Schedules

log = logging.getLogger("monq.scheduler")

BATCH = 100


class Scheduler:
    name = "scheduler"

    def __init__(self, store: Store, config: Config, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        self.schedules = ScheduleStore(store)
        self.jobs = JobStore(store)

    async def run(self, stop: asyncio.Event) -> None:
        if not await wait_for_database(self.store, stop, "scheduler"):
            return
        synced = False

        async def tick() -> None:
            nonlocal synced
            if not synced:  # once the database answers
                await self.sync_types()
                synced = True
            await self.tick()

        await periodic("the scheduler", tick, stop, interval_s=self.config.scheduler.interval_s,
                       logger=log)

    async def sync_types(self) -> None:
        """The job types' class-level schedules into sys.schedule."""
        modules = self.config.scheduler.job_modules
        try:
            names = await Schedules(self.store, author="scheduler", clock=self.clock
                                    ).sync_types(modules)
        except (ImportError, BadRequest, Conflict) as exc:
            log.error("scheduler: job types in %s not synced: %s", modules, exc,
                      extra={"action": "sync_failed"})
            return
        if names:
            log.info("scheduler: %d job type schedules", len(names),
                     extra={"action": "synced", "schedules": names})

    async def tick(self) -> int:
        """One pass: finish abandoned ticks, then fire due schedules; jobs enqueued."""
        now = self.clock()
        enqueued = 0
        stale_before = now - timedelta(seconds=self.config.scheduler.stale_s)
        for doc in await self.schedules.stale_pending(stale_before, BATCH):
            enqueued += await self._isolated(doc, self._take_over(doc, stale_before, now))
        for doc in await self.schedules.due(now, BATCH):
            enqueued += await self._isolated(doc, self._fire(doc, now))
        return enqueued

    async def _isolated(self, doc: dict[str, Any], work: Awaitable[int]) -> int:
        """One schedule's work; its failure (other than the database's) spares the rest."""
        try:
            return await work
        except DatabaseUnavailable:
            raise
        except (Error, ValueError, KeyError) as exc:
            log.error("schedule %s failed: %s", doc.get("name"), exc,
                      extra={"action": "schedule_failed", "schedule": doc.get("name")})
            return 0

    async def _fire(self, doc: dict[str, Any], now: datetime) -> int:
        cfg = self.config.scheduler
        zone = cron.check_zone(doc.get("timezone", "UTC"))
        key = str(doc["_id"])
        jitter_bound = float(doc.get("jitter_s", 0.0))
        plan = cron.plan(doc["cron"], zone, doc["next_tick"], now,
                         catchup=doc.get("catchup", "latest"), cap=cfg.catchup_cap,
                         grace_s=cfg.grace_s, jitter_bound_s=jitter_bound, schedule_id=key)
        token = secrets.token_hex(8)
        entries = [{"tick": t, "job_id": ObjectId(), "token": token, "claimed_at": now,
                    "at": t + timedelta(seconds=cron.jitter_s(key, t, jitter_bound))}
                   for t in plan.ticks]
        fields: dict[str, Any] = {
            "next_tick": plan.next_tick, "last_at": now,
            "next_at": plan.next_tick + timedelta(
                seconds=cron.jitter_s(key, plan.next_tick, jitter_bound))}
        if plan.ticks:
            fields["last_tick"] = plan.ticks[-1]
        if not await self.schedules.advance(doc, fields, entries):
            return 0  # another scheduler claimed these ticks, or the schedule changed
        if not plan.ticks:
            log.info("schedule %s: missed tick %s not caught up (policy %s)", doc["name"],
                     doc["next_tick"], doc.get("catchup"),
                     extra={"action": "tick_missed", "schedule": doc["name"]})
        previous = doc.get("last_job_id")
        count = 0
        for entry in entries:
            if await self._enqueue(doc, entry, token, previous):
                previous = entry["job_id"]
                count += 1
        return count

    async def _take_over(self, doc: dict[str, Any], stale_before: datetime,
                         now: datetime) -> int:
        count = 0
        for entry in doc.get("pending") or []:
            if entry["claimed_at"] >= stale_before:
                continue
            token = secrets.token_hex(8)
            if not await self.schedules.claim_entry(doc["_id"], entry, token, now):
                continue
            queued, journaled = await self.jobs.in_both(entry["job_id"])  # in this order
            if queued or journaled:
                await self.schedules.finish_entry(doc["_id"], entry["job_id"],
                                                  {"last_job_id": entry["job_id"]})
                continue
            log.info("schedule %s: taking over tick %s", doc["name"], entry["tick"],
                     extra={"action": "tick_taken_over", "schedule": doc["name"]})
            count += await self._enqueue(doc, {**entry, "token": token}, token,
                                         doc.get("last_job_id"))
        return count

    async def _still_running(self, job_id: ObjectId | None) -> bool:
        if job_id is None:
            return False
        queued, journaled = await self.jobs.in_both(job_id)
        return queued and not journaled

    async def _enqueue(self, doc: dict[str, Any], entry: dict[str, Any], token: str,
                       previous: ObjectId | None) -> bool:
        """Enqueue one claimed tick's job (or skip it); whether a job was enqueued."""
        name, job_id, tick = doc["name"], entry["job_id"], entry["tick"]
        if doc.get("overlap") == "skip" and await self._still_running(previous):
            log.info("schedule %s: tick %s skipped, the previous job is still queued", name,
                     tick, extra={"action": "tick_skipped", "schedule": name})
            await self.schedules.finish_entry(doc["_id"], job_id, {"last_skipped": tick})
            return False
        if not await self.schedules.holds_entry(doc["_id"], job_id, token):
            return False  # taken over by another scheduler
        origin = Origin(by="scheduler", origin="scheduler", detail={
            "schedule": name, "schedule_id": doc["_id"], "tick": tick})
        queue = Queue(self.store, self.config, author="scheduler", origin=origin,
                      clock=self.clock, lazy_enqueue=True)
        request = EnqueueRequest(name=doc["job"], args=doc.get("args") or {},
                                 at=entry["at"], job_id=job_id)
        done: dict[str, Any] = {"last_job_id": job_id, "last_error": None}
        enqueued = False
        try:
            await queue.enqueue_many([request])
            enqueued = True
            log.info("schedule %s: enqueued tick %s", name, tick,
                     extra={"action": "tick_enqueued", "schedule": name})
        except Conflict:  # enqueued before under this id, or a unique twin is queued
            queued, journaled = await self.jobs.in_both(job_id)
            if not (queued or journaled):
                log.info("schedule %s: tick %s skipped, an identical unique job is queued",
                         name, tick, extra={"action": "tick_skipped", "schedule": name})
                done = {"last_skipped": tick}
        except (BadRequest, NotFound) as exc:  # the job type went away or changed
            log.error("schedule %s: tick %s not enqueued: %s", name, tick, exc,
                      extra={"action": "tick_failed", "schedule": name})
            done = {"last_error": exc.message}
        await self.schedules.finish_entry(doc["_id"], job_id, done)
        return enqueued


def services(config: Config, store: Store) -> list[Scheduler]:
    return [Scheduler(store, config)]
