"""Queries on sys.worker: one document per worker process
``{_id, kind: "worker", host, pid, pool, concurrency, tags, started_at, heartbeat,
jobs: [{_id, number, name}], stopping}``, and the change stream that wakes workers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pymongo.errors

from monq.core.store import Store, layout


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

    @contextlib.asynccontextmanager
    async def queue_changes(self) -> AsyncIterator[Any]:
        """A change stream of what may give a worker work (new jobs, jobs waiting
        again, released or unblocked) or stop one (kill, removal) in sys.queue; raises
        `StoreError` where the server has no change streams."""
        waiting = ["pending", "deferred", "failed"]
        pipeline = [{"$match": {"$or": [
            {"operationType": "insert"},
            {"updateDescription.updatedFields.state": {"$in": waiting}},
            {"updateDescription.updatedFields.held": False},
            {"updateDescription.updatedFields.blocked": False},
            {"updateDescription.updatedFields.killed_at": {"$exists": True}},
            {"updateDescription.updatedFields.removed_at": {"$exists": True}},
        ]}}]
        async with self.store.errors():
            stream = await self.store.collection(layout.QUEUE).watch(pipeline)
        try:
            yield stream
        finally:
            with contextlib.suppress(pymongo.errors.PyMongoError):
                await stream.close()
