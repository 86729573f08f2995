"""Queries on sys.history and the singleton leases in sys.worker.

A history document: ``{_id, resolution: "second"|"minute"|"hour", created,
<state>: n (non-zero only), total, jobs: [{name, state, n, zombie, wall, killed,
removed}]}``, unique per (resolution, created).

A lease: ``{_id: "lease:<name>", holder, expires_at, epoch}``; taken or renewed by
one conditional update, so two holders never overlap while clocks agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pymongo.errors

from monq.core.store import Store, layout
from monq.core.store.workers import WorkerStore

STATE_FIELDS = ("pending", "running", "deferred", "failed")


class HistoryStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.history = store.collection(layout.HISTORY)
        self.workers = store.collection(layout.WORKER)
        self.queue = store.collection(layout.QUEUE)
        self.events = store.collection(layout.EVENT)

    # Leases (kept in sys.worker, see `monq.core.store.workers`) ---------------------
    async def take_lease(self, name: str, holder: str, now: datetime, ttl_s: float
                         ) -> bool:
        """Take or renew the lease `name` for `holder`; False while another holds it."""
        return await WorkerStore(self.store).take_lease(name, holder, now, ttl_s)

    async def drop_lease(self, name: str, holder: str) -> None:
        await WorkerStore(self.store).drop_lease(name, holder)

    async def lease(self, name: str) -> dict[str, Any] | None:
        return await WorkerStore(self.store).lease(name)

    # The queue's state ------------------------------------------------------------
    async def queue_snapshot(self) -> list[dict[str, Any]]:
        """Every queued job's name, state and flags (for a full reconcile)."""
        async with self.store.errors():
            return await self.queue.find({}, {"name": 1, "state": 1, "zombie_at": 1,
                                              "wall_at": 1, "killed_at": 1, "removed_at": 1}
                                         ).to_list(None)

    # History ----------------------------------------------------------------------
    async def write(self, doc: dict[str, Any]) -> bool:
        """Insert a history document; False if that (resolution, second) exists."""
        async with self.store.errors():
            try:
                await self.history.insert_one(doc)
            except pymongo.errors.DuplicateKeyError:
                return False
        return True

    async def upsert(self, doc: dict[str, Any]) -> None:
        async with self.store.errors():
            await self.history.replace_one(
                {"resolution": doc["resolution"], "created": doc["created"]}, doc, upsert=True)

    async def latest(self, resolution: str = "second", before: datetime | None = None
                     ) -> dict[str, Any] | None:
        query: dict[str, Any] = {"resolution": resolution}
        if before is not None:
            query["created"] = {"$lt": before}
        async with self.store.errors():
            return await self.history.find_one(query, sort=[("created", -1)])

    async def between(self, resolution: str, start: datetime | None, end: datetime | None,
                      *, skip: int = 0, limit: int = 0, newest_first: bool = True
                      ) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {"resolution": resolution}
        span: dict[str, Any] = {}
        if start is not None:
            span["$gte"] = start
        if end is not None:
            span["$lt"] = end
        if span:
            query["created"] = span
        async with self.store.errors():
            total = await self.history.count_documents(query)
            cursor = self.history.find(query).sort("created", -1 if newest_first else 1
                                                   ).skip(skip)
            if limit:
                cursor = cursor.limit(limit)
            return await cursor.to_list(None), total

    async def delete_before(self, resolution: str, before: datetime) -> int:
        async with self.store.errors():
            result = await self.history.delete_many({"resolution": resolution,
                                                     "created": {"$lt": before}})
        return result.deleted_count

    async def insert_many(self, docs: Sequence[dict[str, Any]]) -> None:
        async with self.store.errors():
            await self.history.insert_many(list(docs), ordered=False)
