"""Queries on sys.counter: the job number sequence and cluster-wide parallel slots.

``{_id: "job_number", n}``: the last job number handed out; a batch reserves a
range with one ``$inc``.

``{_id: "parallel:<job name>", name, max, holders: [{job, at}]}``: the jobs of a
name that hold one of its ``max_parallel`` slots. A slot is taken with one
conditional update (only while fewer than ``max`` hold one) and given back when
the job leaves ``running``; the sweep gives back slots of jobs that no longer run.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from monq.core.errors import Conflict, StoreError
from monq.core.store import Store, layout

JOB_NUMBER = "job_number"
UPSERT_TRIES = 5


class CounterStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.counters = store.collection(layout.COUNTER)

    async def reserve_numbers(self, count: int) -> int:
        """Reserve `count` job numbers; the first of them."""
        # Concurrent first upserts of the counter may collide (a duplicate key, or no
        # document from some servers): the loser finds the counter made and retries (a
        # try the server applied anyway leaves a gap in the numbers, never a repeat).
        for _ in range(UPSERT_TRIES):
            with contextlib.suppress(Conflict):
                async with self.store.errors():
                    doc = await self.counters.find_one_and_update(
                        {"_id": JOB_NUMBER}, {"$inc": {"n": count}}, upsert=True,
                        return_document=ReturnDocument.AFTER)
                if doc is not None:
                    return int(doc["n"]) - count + 1
        raise StoreError("could not reserve job numbers: the counter upsert kept colliding")

    async def full_names(self) -> list[str]:
        """Job names all of whose parallel slots are taken."""
        async with self.store.errors():
            docs = await self.counters.find(
                {"kind": "parallel", "$expr": {"$gte": [{"$size": "$holders"}, "$max"]}},
                {"name": 1}).to_list(None)
        return [d["name"] for d in docs]

    async def take_slot(self, name: str, max_parallel: int, job_id: ObjectId,
                        now: datetime) -> bool:
        """Take one of `name`'s slots for `job_id`; False when all are taken."""
        key = f"parallel:{name}"
        async with self.store.errors():
            await self.counters.update_one(
                {"_id": key}, {"$setOnInsert": {"kind": "parallel", "name": name,
                                                "holders": []},
                               "$set": {"max": max_parallel}}, upsert=True)
            result = await self.counters.update_one(
                {"_id": key, "holders.job": {"$ne": job_id},
                 "$expr": {"$lt": [{"$size": "$holders"}, max_parallel]}},
                {"$push": {"holders": {"job": job_id, "at": now}}})
        return result.modified_count == 1

    async def give_slot(self, name: str, job_id: ObjectId) -> None:
        async with self.store.errors():
            await self.counters.update_one({"_id": f"parallel:{name}"},
                                           {"$pull": {"holders": {"job": job_id}}})

    async def slot_holders(self) -> list[dict[str, Any]]:
        async with self.store.errors():
            return await self.counters.find({"kind": "parallel"}).to_list(None)
