"""Queries on sys.notification (deliveries) and the notifier's cursor in sys.counter.

A delivery: ``{_id, job_id, number, job_name, event_id, transition, type, rule,
payload, language, state: pending|delivered|failed, attempts, max_attempts, next_at,
owner, last_error, created, delivered_at, resent}``. Its ``_id`` is derived from the
event and the rule, so deriving it again (after a crash, or by a second notifier)
finds the same document instead of making another: `add` only inserts.

A pending delivery is claimed by one `claim` (pending, due) that pushes ``next_at``
forward by the lease and counts the attempt, so that one notifier owns each send;
a notifier killed mid-send leaves it pending and it is claimed again when the
lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pymongo.errors
from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne

from monq.core.store import Store, layout

CURSOR_ID = "notifier_cursor"


class NotificationStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.deliveries = store.collection(layout.NOTIFICATION)
        self.counters = store.collection(layout.COUNTER)
        self.events = store.collection(layout.EVENT)
        self.queue = store.collection(layout.QUEUE)
        self.journal = store.collection(layout.JOURNAL)
        self.roles = store.collection(layout.ROLE)

    # Deriving -----------------------------------------------------------------
    async def cursor(self) -> ObjectId | None:
        async with self.store.errors():
            doc = await self.counters.find_one({"_id": CURSOR_ID})
        return doc["event_id"] if doc else None

    async def advance_cursor(self, event_id: ObjectId) -> None:
        """Move the cursor forward (never back, whoever else moves it)."""
        async with self.store.errors():
            await self.counters.update_one({"_id": CURSOR_ID},
                                           {"$max": {"event_id": event_id}}, upsert=True)

    async def jobs_with_rules(self, job_ids: Sequence[ObjectId], names: Sequence[str]
                              ) -> dict[ObjectId, dict[str, Any]]:
        """The documents (without outboxes) of those jobs, from the queue or the journal,
        that have rules of their own or whose type, one of `names`, has some: jobs
        without notifications cost no transfer."""
        if not job_ids:
            return {}
        found: dict[ObjectId, dict[str, Any]] = {}
        async with self.store.errors():
            for collection in (self.queue, self.journal):
                missing = [j for j in job_ids if j not in found]
                if not missing:
                    break
                query = {"_id": {"$in": missing}, "$or": [
                    {"notifications.0": {"$exists": True}}, {"name": {"$in": list(names)}}]}
                async for doc in collection.find(query, {"outbox": 0}):
                    found[doc["_id"]] = doc
        return found

    async def languages(self, emails: Sequence[str]) -> dict[str, str]:
        """Users' languages by email address (index ``email``), where set."""
        if not emails:
            return {}
        async with self.store.errors():
            docs = await self.roles.find(
                {"email": {"$in": list(emails)}, "kind": "user"},
                {"email": 1, "language": 1}).to_list(None)
        return {d["email"]: d["language"] for d in docs if d.get("language")}

    async def user_language(self, name: str) -> str | None:
        async with self.store.errors():
            doc = await self.roles.find_one({"kind": "user", "name": name}, {"language": 1})
        return (doc or {}).get("language")

    async def add(self, deliveries: Sequence[dict[str, Any]]) -> int:
        """Insert the deliveries not there yet; how many were new."""
        if not deliveries:
            return 0
        ops = [UpdateOne({"_id": d["_id"]}, {"$setOnInsert": d}, upsert=True)
               for d in deliveries]
        async with self.store.errors():
            try:
                result = await self.deliveries.bulk_write(ops, ordered=False)
            except pymongo.errors.BulkWriteError as exc:  # two notifiers raced: fine
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                return int(exc.details.get("nUpserted", 0))
        return result.upserted_count

    # Sending --------------------------------------------------------------------
    async def claim(self, owner: str, now: datetime, lease_s: float
                    ) -> dict[str, Any] | None:
        """Take the most overdue pending delivery for one send (index ``due``)."""
        async with self.store.errors():
            return await self.deliveries.find_one_and_update(
                {"state": "pending", "next_at": {"$lte": now}},
                {"$set": {"owner": owner, "next_at": now + timedelta(seconds=lease_s),
                          "claimed_at": now},
                 "$inc": {"attempts": 1}},
                sort=[("next_at", 1)], return_document=ReturnDocument.AFTER)

    async def finish(self, delivery_id: str, owner: str, fields: dict[str, Any]) -> bool:
        """Record the outcome of a send, if `owner` still owns it."""
        async with self.store.errors():
            result = await self.deliveries.update_one(
                {"_id": delivery_id, "owner": owner, "state": "pending"},
                {"$set": fields})
        return result.modified_count == 1

    async def resend(self, delivery_id: str, now: datetime) -> dict[str, Any] | None:
        """Make a delivery pending again, due now, with its attempts renewed."""
        async with self.store.errors():
            return await self.deliveries.find_one_and_update(
                {"_id": delivery_id},
                {"$set": {"state": "pending", "next_at": now, "attempts": 0, "owner": None,
                          "last_error": None},
                 "$inc": {"resent": 1}},
                return_document=ReturnDocument.AFTER)

    async def delete_delivered(self, before: datetime) -> int:
        async with self.store.errors():
            result = await self.deliveries.delete_many(
                {"state": "delivered", "delivered_at": {"$lt": before}})
        return result.deleted_count

    # Reading --------------------------------------------------------------------
    async def get(self, delivery_id: str) -> dict[str, Any] | None:
        async with self.store.errors():
            return await self.deliveries.find_one({"_id": delivery_id})

    async def page(self, *, states: Sequence[str] = (), job_id: ObjectId | None = None,
                   names: Sequence[str] | None = None, skip: int = 0, limit: int = 50
                   ) -> tuple[list[dict[str, Any]], int]:
        """Deliveries, newest first; `names` limits them to those job names."""
        query: dict[str, Any] = {}
        if states:
            query["state"] = {"$in": list(states)}
        if job_id is not None:
            query["job_id"] = job_id
        if names is not None:
            query["job_name"] = {"$in": list(names)}
        async with self.store.errors():
            total = await self.deliveries.count_documents(query)
            docs = await self.deliveries.find(query).sort("created", -1).skip(skip).limit(
                limit).to_list(None)
        return docs, total

    async def job_names(self) -> list[str]:
        async with self.store.errors():
            return [str(n) for n in await self.deliveries.distinct("job_name")]
