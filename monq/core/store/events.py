"""Queries on sys.event: relaying events (under their pre-assigned ``_id``) and
reading them back. Event ids are `event_id()`s: ObjectIds whose bytes after the
seconds hold the microseconds, so that ``_id`` order follows time order across
processes (to within the clock skew of the machines), not only within one."""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pymongo.errors
from bson import ObjectId

from monq.core.store import Store, layout

_TAIL = struct.Struct(">I")


class _Clock:
    """The last event time handed out in this process, in microseconds."""

    last_us = 0
    lock = threading.Lock()


def event_id() -> ObjectId:
    """A new event id: 4 bytes of seconds, 3 of microseconds, 5 random bytes; strictly
    increasing within this process even when the clock stands still or steps back."""
    with _Clock.lock:
        now_us = max(time.time_ns() // 1000, _Clock.last_us + 1)
        _Clock.last_us = now_us
    seconds, micros = divmod(now_us, 1_000_000)
    return ObjectId(_TAIL.pack(seconds) + micros.to_bytes(3, "big") + os.urandom(5))


def new_event(name: str, *, channel: str, author: str | None, data: dict[str, Any],
              now: datetime | None = None) -> dict[str, Any]:
    """An event document ``{_id, name, channel, author, created, data}``."""
    return {"_id": event_id(), "name": name, "channel": channel, "author": author,
            "created": now or datetime.now(UTC), "data": data}


class EventStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.events = store.collection(layout.EVENT)

    async def insert(self, events: Sequence[dict[str, Any]]) -> None:
        """Insert events; ones already there (same ``_id``) are left as they are."""
        if not events:
            return
        async with self.store.errors():
            try:
                await self.events.insert_many(list(events), ordered=False)
            except pymongo.errors.BulkWriteError as exc:
                others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
                if others:
                    raise

    async def for_job(self, job_id: ObjectId) -> list[dict[str, Any]]:
        async with self.store.errors():
            return await self.events.find({"data._id": job_id}).sort("_id", 1).to_list(None)

    async def after(self, last_id: ObjectId | None, *, channels: Sequence[str] | None = None,
                    names: Sequence[str] | None = None, job_id: ObjectId | None = None,
                    limit: int = 1000) -> list[dict[str, Any]]:
        """Events after `last_id` in ``_id`` order, of some channels, names or one job
        (the ``_id``, ``channel`` and ``job`` indexes serve it)."""
        query: dict[str, Any] = {}
        if last_id is not None:
            query["_id"] = {"$gt": last_id}
        if channels is not None:
            query["channel"] = {"$in": list(channels)}
        if names is not None:
            query["name"] = {"$in": list(names)}
        if job_id is not None:
            query["data._id"] = job_id
        async with self.store.errors():
            return await self.events.find(query).sort("_id", 1).limit(limit).to_list(None)

    async def count(self, name: str | None = None) -> int:
        async with self.store.errors():
            return await self.events.count_documents({"name": name} if name else {})
