"""Queries on sys.counter: the job number sequence and cluster-wide parallel slots.

``{_id: "job_number", n}``: the last job number reserved. A process reserves
numbers in blocks (`NumberBlocks`), one ``$inc`` for many jobs, and hands the
unused rest of its last block back when its `Store` closes, if no process reserved
after it (one conditional update: only while ``n`` still equals the end of that
block). Numbers are unique and increase within each process; across processes
they interleave by blocks (a job enqueued later elsewhere may carry a smaller
number). A closed `Store` (a ``monq enqueue`` that ends, a server stopped cleanly)
leaves no gap unless another process reserved after it; a killed one leaves the
rest of its block unused.

``{_id: "parallel:<job name>", name, max, holders: [{job, at}]}``: the jobs of a
name that hold one of its ``max_parallel`` slots. A slot is taken with one
conditional update (only while fewer than ``max`` hold one) and given back when
the job leaves ``running``; the sweep gives back slots of jobs that no longer run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pymongo
from bson import ObjectId
from pymongo import ReturnDocument

from monq.core.errors import Conflict, StoreError
from monq.core.store import Store, layout

JOB_NUMBER = "job_number"
UPSERT_TRIES = 5
# A process's first block, and its blocks while it is quiet: one reservation in 16
# enqueues (a job's life pays for one 1 time in 16), few enough numbers that a killed
# process's gap and the interleaving across processes stay small.
BLOCK = 16
MAX_BLOCK = 64  # numbers a busy process reserves at once at most
BUSY_RESERVATIONS = 8  # reservations within BUSY_WINDOW_S that make a process busy
BUSY_WINDOW_S = 1.0
GIVE_BACK_TIMEOUT_S = 2.0  # a close waits no longer for an unreachable server


@dataclass
class NumberBlocks:
    """The numbers this process reserved and has not handed out yet, ``[next, end)``;
    one per `Store` (that is, per process and database). A process reserves `BLOCK`
    numbers at a time; once it is busy, `BUSY_RESERVATIONS` reservations within
    `BUSY_WINDOW_S`, its blocks double up to `MAX_BLOCK`, and shrink back to `BLOCK`
    once it is quiet. `CounterStore.give_back_numbers` hands the unused rest back."""

    next: int = 0
    end: int = 0
    size: int = BLOCK
    # the process the block belongs to: a forked child inherits the object, and must
    # neither hand out nor hand back its parent's numbers
    pid: int = field(default_factory=os.getpid)
    window_at: float = float("-inf")
    reservations: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def mine(self) -> bool:
        """Whether the block is this process's; a forked child's starts empty."""
        if self.pid == os.getpid():
            return True
        self.next = self.end = 0
        self.pid = os.getpid()
        return False

    def take(self, count: int) -> int | None:
        if self.end - self.next < count:
            return None
        first, self.next = self.next, self.next + count
        return first

    def next_size(self, count: int, now: float) -> int:
        """How many numbers to reserve for `count` jobs at `now` (monotonic seconds)."""
        if now - self.window_at > BUSY_WINDOW_S:
            self.window_at, self.reservations, self.size = now, 0, BLOCK
        self.reservations += 1
        if self.reservations >= BUSY_RESERVATIONS:
            self.size = min(MAX_BLOCK, self.size * 2)
        return max(count, self.size)


class CounterStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.counters = store.collection(layout.COUNTER)

    async def reserve_numbers(self, count: int) -> int:
        """`count` consecutive job numbers, from this process's block or a new one;
        the first of them."""
        if self.store.number_blocks is None:
            self.store.number_blocks = NumberBlocks()
        blocks: NumberBlocks = self.store.number_blocks
        async with blocks.lock:
            blocks.mine()
            first = blocks.take(count)
            if first is not None:
                return first
            size = blocks.next_size(count, time.monotonic())
            start = await self._reserve(size)
            blocks.next, blocks.end = start + count, start + size
            return start

    async def give_back_numbers(self) -> None:
        """Hand back the numbers this process reserved and did not use, if no process
        reserved after it; `Store.close` calls it. Afterwards the process has none."""
        blocks: NumberBlocks | None = self.store.number_blocks
        if blocks is None:
            return
        async with blocks.lock:
            if not blocks.mine():
                return
            unused, end = blocks.next, blocks.end
            blocks.next = blocks.end = 0
            if unused >= end:
                return
            # Only while n is still the end of this block: a process that reserved
            # after it moved n on, and its numbers must stay above every later one.
            with pymongo.timeout(GIVE_BACK_TIMEOUT_S):
                async with self.store.errors():
                    await self.counters.update_one({"_id": JOB_NUMBER, "n": end - 1},
                                                   {"$set": {"n": unused - 1}})

    async def _reserve(self, count: int) -> int:
        """Reserve `count` job numbers in the database; the first of them."""
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
