"""Queries on sys.schedule: cron schedules and the scheduler's per-tick outbox.

A schedule document::

    {_id, name (unique per job), job, args, cron, timezone, jitter_s, enabled,
     catchup: "none"|"latest"|"all", overlap: "skip"|"enqueue",
     source: "api"|"type", etag, created, updated, created_by,
     next_tick, next_at (= next_tick + its jitter: when it is due),
     last_tick, last_at, last_job_id, last_skipped,
     pending: [{tick, job_id, at, token, claimed_at}]}

Users change the definition (and with it the ``etag``); schedulers change only
``next_tick``, ``next_at``, ``last_*`` and ``pending``. `advance` is the
compare-and-set that hands one tick to exactly one scheduler: its filter names
the ``next_tick`` and ``etag`` the scheduler planned from, and the same update
moves ``next_tick`` on and pushes the planned ticks (with their job ids fixed)
onto ``pending``. Each pending entry is then enqueued and pulled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from monq.core.store import Store, layout


class ScheduleStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.schedules = store.collection(layout.SCHEDULE)

    # Definitions ------------------------------------------------------------------
    async def insert(self, doc: dict[str, Any]) -> None:
        async with self.store.errors():
            await self.schedules.insert_one(doc)

    async def get(self, schedule_id: ObjectId) -> dict[str, Any] | None:
        async with self.store.errors():
            return await self.schedules.find_one({"_id": schedule_id})

    async def named(self, name: str) -> list[dict[str, Any]]:
        """The schedules called `name` (one per job at most)."""
        async with self.store.errors():
            return await self.schedules.find({"name": name}).sort("job", 1).to_list(None)

    async def by_name(self, name: str, job: str) -> dict[str, Any] | None:
        async with self.store.errors():
            return await self.schedules.find_one({"name": name, "job": job})

    async def all(self) -> list[dict[str, Any]]:
        """Every schedule, by name (sys.schedule holds one document per schedule)."""
        async with self.store.errors():
            return await self.schedules.find({}).sort("name", 1).to_list(None)

    async def update(self, schedule_id: ObjectId, etag: ObjectId | None,
                     fields: dict[str, Any]) -> dict[str, Any] | None:
        """Change a definition if it still has `etag` (any when None); a new etag."""
        query: dict[str, Any] = {"_id": schedule_id}
        if etag is not None:
            query["etag"] = etag
        async with self.store.errors():
            return await self.schedules.find_one_and_update(
                query, {"$set": {**fields, "etag": ObjectId()}},
                return_document=ReturnDocument.AFTER)

    async def delete(self, schedule_id: ObjectId, etag: ObjectId) -> bool:
        async with self.store.errors():
            result = await self.schedules.delete_one({"_id": schedule_id, "etag": etag})
        return result.deleted_count == 1

    # The scheduler ----------------------------------------------------------------
    async def due(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Enabled schedules whose next tick has come (index ``due``)."""
        async with self.store.errors():
            return await self.schedules.find(
                {"enabled": True, "next_at": {"$lte": now}}).sort("next_at", 1).limit(
                limit).to_list(None)

    async def stale_pending(self, claimed_before: datetime, limit: int = 100
                            ) -> list[dict[str, Any]]:
        """Schedules with an outbox entry nobody finished (index ``pending_claimed``)."""
        async with self.store.errors():
            return await self.schedules.find(
                {"pending.claimed_at": {"$lt": claimed_before}}).limit(limit).to_list(None)

    async def advance(self, doc: dict[str, Any], fields: dict[str, Any],
                      entries: Sequence[dict[str, Any]]) -> bool:
        """The compare-and-set: move the schedule on from the ``next_tick`` and
        ``etag`` of `doc` and record `entries`; False if another got there first."""
        update: dict[str, Any] = {"$set": fields}
        if entries:
            update["$push"] = {"pending": {"$each": list(entries)}}
        async with self.store.errors():
            result = await self.schedules.update_one(
                {"_id": doc["_id"], "next_tick": doc.get("next_tick"),
                 "etag": doc.get("etag"), "enabled": True}, update)
        return result.modified_count == 1

    async def claim_entry(self, schedule_id: ObjectId, entry: dict[str, Any], token: str,
                          now: datetime) -> bool:
        """Take over an outbox entry still held by `entry`'s token."""
        async with self.store.errors():
            result = await self.schedules.update_one(
                {"_id": schedule_id, "pending": {"$elemMatch": {
                    "job_id": entry["job_id"], "token": entry["token"]}}},
                {"$set": {"pending.$.token": token, "pending.$.claimed_at": now}})
        return result.modified_count == 1

    async def holds_entry(self, schedule_id: ObjectId, job_id: ObjectId, token: str) -> bool:
        async with self.store.errors():
            return bool(await self.schedules.count_documents(
                {"_id": schedule_id,
                 "pending": {"$elemMatch": {"job_id": job_id, "token": token}}}, limit=1))

    async def finish_entry(self, schedule_id: ObjectId, job_id: ObjectId,
                           fields: dict[str, Any]) -> None:
        """Pull a done outbox entry, recording what came of it."""
        async with self.store.errors():
            await self.schedules.update_one(
                {"_id": schedule_id, "pending.job_id": job_id},
                {"$pull": {"pending": {"job_id": job_id}}, "$set": fields})
