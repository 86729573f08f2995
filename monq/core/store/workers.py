"""Queries on sys.worker: one document per worker process
``{_id, kind: "worker", host, pid, pool, concurrency, tags, started_at, heartbeat,
jobs: [{_id, number, name}], stopping}``, leases of singleton roles
``{_id: "lease:<name>", kind: "lease", holder, expires_at}`` (the summarizer, the
sweeper), and the change stream that wakes workers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pymongo.errors
from pymongo import ReturnDocument

from monq.core.store import Store, layout

WATCH_AWAIT_MS = 10_000


class WorkerStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.workers = store.collection(layout.WORKER)

    async def register(self, doc: dict[str, Any]) -> None:
        async with self.store.errors():
            await self.workers.replace_one({"_id": doc["_id"]}, {"kind": "worker", **doc},
                                           upsert=True)

    async def beat(self, worker_id: str, now: datetime, jobs: list[dict[str, Any]],
                   **fields: Any) -> None:
        async with self.store.errors():
            await self.workers.update_one({"_id": worker_id},
                                          {"$set": {"heartbeat": now, "jobs": jobs, **fields}})

    async def unregister(self, worker_id: str) -> None:
        async with self.store.errors():
            await self.workers.delete_one({"_id": worker_id})

    async def list(self, since: datetime) -> list[dict[str, Any]]:
        async with self.store.errors():
            return await self.workers.find({"kind": "worker", "heartbeat": {"$gte": since}}
                                           ).sort("_id", 1).to_list(None)

    # Leases -------------------------------------------------------------------------
    async def take_lease(self, name: str, holder: str, now: datetime, ttl_s: float
                         ) -> bool:
        """Take or renew the lease `name` for `holder`; False while another holds it."""
        key = f"lease:{name}"
        expires = now + timedelta(seconds=ttl_s)
        async with self.store.errors():
            try:
                doc = await self.workers.find_one_and_update(
                    {"_id": key, "$or": [{"holder": holder}, {"expires_at": {"$lt": now}}]},
                    {"$set": {"holder": holder, "expires_at": expires, "kind": "lease"}},
                    upsert=True, return_document=ReturnDocument.AFTER)
            except pymongo.errors.DuplicateKeyError:
                return False  # someone else holds it
        return doc is not None and doc["holder"] == holder

    async def drop_lease(self, name: str, holder: str) -> None:
        async with self.store.errors():
            await self.workers.delete_one({"_id": f"lease:{name}", "holder": holder})

    async def lease(self, name: str) -> dict[str, Any] | None:
        async with self.store.errors():
            return await self.workers.find_one({"_id": f"lease:{name}"})

    # Waking -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def queue_changes(self) -> AsyncIterator[Any]:
        """A change stream of what may give a worker work (new jobs, jobs waiting
        again, released or unblocked), what takes it away (claims), or stops a job
        (kill, removal) in sys.queue; raises `StoreError` where the server has no
        change streams."""
        waiting = ["pending", "deferred", "failed"]
        pipeline = [{"$match": {"$or": [
            {"operationType": "insert"},
            {"updateDescription.updatedFields.state": {"$in": waiting}},
            {"updateDescription.updatedFields.held": False},
            {"updateDescription.updatedFields.blocked": False},
            # a claim: workers whose turn for the job was still to come need not try
            {"updateDescription.updatedFields.locked.token": {"$exists": True}},
            {"updateDescription.updatedFields.killed_at": {"$exists": True}},
            {"updateDescription.updatedFields.removed_at": {"$exists": True}},
        ]}}]
        async with self.store.errors():
            # the server answers a getMore as soon as a change comes: waiting longer
            # for one costs nothing but saves an idle worker's round trips
            stream = await self.store.stream_collection(layout.QUEUE).watch(
                pipeline, max_await_time_ms=WATCH_AWAIT_MS)
        try:
            yield stream
        finally:
            with contextlib.suppress(pymongo.errors.PyMongoError):
                await stream.close()
