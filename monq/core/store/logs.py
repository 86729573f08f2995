"""Queries on sys.log: job log lines ``{_id, job_id, created, level, message, extra}``,
written in batches and read back per job in order. The ``_id`` is an ObjectId made by
the driver when the batch is written, so it carries the write time: retention deletes
by ``_id``, no other index needed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from monq.core.store import Store, layout


class LogStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.logs = store.collection(layout.LOG)

    async def append(self, lines: Sequence[dict[str, Any]]) -> None:
        if not lines:
            return
        async with self.store.errors():
            await self.logs.insert_many(list(lines), ordered=True)

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        """Delete at most `limit` log lines written before `cutoff`."""
        return await self.store.delete_batch(
            self.logs, {"_id": {"$lt": ObjectId.from_datetime(cutoff)}}, "_id", limit)

    async def read(self, job_id: ObjectId, *, after: ObjectId | None = None, skip: int = 0,
                   limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {"job_id": job_id}
        if after is not None:
            query["_id"] = {"$gt": after}
        async with self.store.errors():
            total = await self.logs.count_documents({"job_id": job_id})
            lines = await self.logs.find(query).sort("_id", 1).skip(skip).limit(limit
                                                                                 ).to_list(None)
        return lines, total
