"""Queries on sys.event: relaying events (under their pre-assigned ``_id``) and
reading them back. Event ids are `event_id()`s: ObjectIds whose bytes after the
seconds hold the microseconds, so that ``_id`` order follows time order across
processes (to within the clock skew of the machines), not only within one.

Late events. An event's id is fixed when its state change is written, and it is
inserted into sys.event a moment later (by the writer), or much later (by a sweep
after the writer died): a reader following sys.event in ``_id`` order may already
be past it. So readers do not follow ``_id``: `EventStore.insert` stamps every event
with ``seq``, a fresh `event_id()` taken at insertion, whatever its ``_id`` (an event
already there keeps the ``seq`` of its first insertion), and `EventReader`, the one
way to follow sys.event (the notifier, the summarizer, the API's poll and its
catch-up after a change stream gap), reads in ``seq`` order. ``_id`` stays the
event's identity and its place in a job's history.

``seq`` order can still differ from the order in which inserts become visible: by
the time an insert takes, and by the clock skew between the inserting hosts. One
bound, ``queue.relay_bound_s``, covers both: each read re-reads that far behind the
newest ``seq`` seen and skips ids it returned before (it remembers them exactly as
long as they are inside that window). An event relayed late, however late, gets a
fresh ``seq`` and is taken by every reader.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import threading
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo.errors
from bson import ObjectId

from monq.core.errors import StreamHistoryLost
from monq.core.group_commit import GroupCommit
from monq.core.store import Store, layout

_TAIL = struct.Struct(">I")
# ChangeStreamHistoryLost, ChangeStreamFatalError, InvalidResumeToken
_HISTORY_LOST = frozenset({286, 280, 260})


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

    async def insert_together(self, events: Sequence[dict[str, Any]]) -> None:
        """`insert`, in one insert with those of the other callers of this process
        that insert at the same time (a `GroupCommit`: the first at once, those asked
        for meanwhile together in the next; each caller returns once its events are
        in, or with the error of the insert that carried them, which may have
        written some: relays are idempotent)."""
        if not events:
            return
        if self.store.event_inserts is None:
            writer = EventStore(self.store)

            async def write(batches: list[Sequence[dict[str, Any]]]) -> list[None]:
                await writer.insert([e for events in batches for e in events])
                return [None] * len(batches)

            self.store.event_inserts = GroupCommit(write)
        group: GroupCommit[Sequence[dict[str, Any]], None] = self.store.event_inserts
        await group.submit(events)

    async def insert(self, events: Sequence[dict[str, Any]]) -> None:
        """Insert events, each stamped with a fresh ``seq`` (see above); ones already
        there (same ``_id``) are left as they are."""
        if not events:
            return
        events = [{**e, "seq": event_id()} for e in events]
        async with self.store.errors():
            try:
                await self.events.insert_many(list(events), ordered=False)
            except pymongo.errors.BulkWriteError as exc:
                others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
                if others:
                    raise

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        """Delete at most `limit` events made before `cutoff` (their ``_id`` holds the time)."""
        return await self.store.delete_batch(
            self.events, {"_id": {"$lt": ObjectId.from_datetime(cutoff)}}, "_id", limit)

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

    async def between(self, low: ObjectId | None, high: ObjectId | None = None, *,
                      limit: int = 10_000) -> list[dict[str, Any]]:
        """Events with ``low < _id <= high`` in ``_id`` order (the polling source)."""
        query: dict[str, Any] = {}
        if low is not None:
            query["$gt"] = low
        if high is not None:
            query["$lte"] = high
        async with self.store.errors():
            return await self.events.find({"_id": query} if query else {}).sort(
                "_id", 1).limit(limit).to_list(None)

    async def seqs_after(self, low: ObjectId | None, *, channel: str | None = None,
                         exclude_names: Sequence[str] = (), limit: int = 1000
                         ) -> list[tuple[ObjectId, ObjectId]]:
        """``(seq, _id)`` of events inserted after the stamp `low`, in ``seq`` order (of
        one channel, without some names); served by the ``seq`` or ``channel_seq`` index."""
        query: dict[str, Any] = {"seq": {"$gt": low} if low is not None else {"$exists": True}}
        if channel is not None:
            query["channel"] = channel
        if exclude_names:
            query["name"] = {"$nin": list(exclude_names)}
        async with self.store.errors():
            docs = await self.events.find(query, {"_id": 1, "seq": 1}).sort("seq", 1).limit(
                limit).to_list(None)
        return [(d["seq"], d["_id"]) for d in docs]

    async def latest_seq(self) -> ObjectId | None:
        """The stamp of the event inserted last."""
        async with self.store.errors():
            doc = await self.events.find_one({"seq": {"$exists": True}}, {"seq": 1},
                                             sort=[("seq", -1)])
        return doc["seq"] if doc else None

    async def by_ids(self, ids: Sequence[ObjectId], projection: dict[str, Any] | None = None
                     ) -> list[dict[str, Any]]:
        """These events (those still there), in id order."""
        if not ids:
            return []
        async with self.store.errors():
            return await self.events.find({"_id": {"$in": list(ids)}}, projection).sort(
                "_id", 1).to_list(None)

    async def latest_id(self) -> ObjectId | None:
        async with self.store.errors():
            doc = await self.events.find_one({}, {"_id": 1}, sort=[("_id", -1)])
        return doc["_id"] if doc else None

    @staticmethod
    def _visible_query(channels: Sequence[str] | None, job_ids: Sequence[ObjectId]
                       ) -> dict[str, Any]:
        """Events of these channels, or about these jobs (queue events by job id, and
        events of the channels ``job:<id>``); `channels` None means every shared
        channel (all but the per-job ``job:<id>`` ones, which need a job to be named)."""
        if channels is None:
            return {"channel": {"$not": re.compile("^job:")}}
        either: list[dict[str, Any]] = []
        if channels:
            either.append({"channel": {"$in": list(channels)}})
        if job_ids:
            either.append({"channel": "queue", "data._id": {"$in": list(job_ids)}})
        return {"$or": either} if either else {"_id": None}

    async def replay(self, since: ObjectId, channels: Sequence[str],
                     job_ids: Sequence[ObjectId], limit: int) -> list[dict[str, Any]]:
        """What a reconnecting client missed: events after `since` of its interests."""
        query = {"_id": {"$gt": since}, **self._visible_query(channels, job_ids)}
        async with self.store.errors():
            return await self.events.find(query).sort("_id", 1).limit(limit).to_list(None)

    async def page(self, channels: Sequence[str] | None, job_ids: Sequence[ObjectId], *,
                   start: datetime | None, end: datetime | None, newest_first: bool,
                   skip: int, limit: int, after: ObjectId | None = None
                   ) -> tuple[list[dict[str, Any]], int]:
        """A page of past events of some channels (or jobs) in a time range (and after
        the event `after`), and the total. The range is on ``_id`` (event ids carry
        their time), so the channel index serves it."""
        query = self._visible_query(channels, job_ids)
        window: dict[str, Any] = {}
        if start is not None:
            window["$gte"] = ObjectId.from_datetime(start)
        if after is not None:
            window["$gt"] = after
        if end is not None:
            window["$lt"] = ObjectId.from_datetime(end)
        if window:
            query = {"_id": window, **query}
        async with self.store.errors():
            docs = await self.events.find(query).sort("_id", -1 if newest_first else 1).skip(
                skip).limit(limit).to_list(None)
            total = await self.events.count_documents(query)
        return docs, total

    @contextlib.asynccontextmanager
    async def changes(self, resume_after: Any = None
                      ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Inserts into sys.event as change events (``_id`` is the resume token,
        ``fullDocument`` the event), resumed after `resume_after` when given. Raises
        `StoreError` where the server has no change streams, and `StreamHistoryLost`
        when the token can no longer be resumed."""
        pipeline = [{"$match": {"operationType": "insert"}}]
        async with self.store.errors():
            try:
                stream = await self.store.stream_collection(layout.EVENT).watch(
                    pipeline, resume_after=resume_after)
            except pymongo.errors.OperationFailure as exc:
                raise self._lost(exc) from exc

        async def iterate() -> AsyncIterator[dict[str, Any]]:
            """Changes until the server ends the stream (its cursor closed)."""
            while True:
                async with self.store.errors():
                    try:
                        change = await stream.next()
                    except StopAsyncIteration:
                        return
                    except pymongo.errors.OperationFailure as exc:
                        raise self._lost(exc) from exc
                yield change

        try:
            yield iterate()
        finally:
            with contextlib.suppress(pymongo.errors.PyMongoError):
                await stream.close()

    @staticmethod
    def _lost(exc: pymongo.errors.OperationFailure) -> Exception:
        if exc.code in _HISTORY_LOST:
            return StreamHistoryLost(f"the event stream cannot resume: {exc}")
        return exc

    async def count(self, name: str | None = None) -> int:
        async with self.store.errors():
            return await self.events.count_documents({"name": name} if name else {})


class EventReader:
    """One reader's way through sys.event: every event once, in insertion (``seq``)
    order per read, including events relayed late (see the module docstring).

    Each `read` lists the events stamped after (newest ``seq`` seen - bound), skips
    the ids it returned before and loads the others. Ids are forgotten only once
    their ``seq`` falls behind that floor, which only rises: an event is never
    returned twice.
    """

    def __init__(self, events: EventStore, bound_s: float, *, channel: str | None = None,
                 exclude_names: Sequence[str] = (), projection: dict[str, Any] | None = None,
                 batch: int = 1000) -> None:
        self.events = events
        self.bound = timedelta(seconds=bound_s)
        self.channel = channel
        self.exclude_names = tuple(exclude_names)
        self.projection = projection
        self.batch = batch
        self.newest: ObjectId | None = None  # the newest seq seen
        self.seen: dict[ObjectId, ObjectId] = {}  # event id -> its seq

    def start_at(self, seq: ObjectId | None) -> None:
        """Read from about the stamp `seq` on (None: from the beginning), forgetting
        what was seen."""
        self.newest = seq
        self.seen = {}

    def floor(self) -> ObjectId | None:
        if self.newest is None:
            return None
        return ObjectId.from_datetime(self.newest.generation_time - self.bound)

    async def read(self, limit: int | None = None, *, behind: bool = True,
                   load: bool = True) -> list[dict[str, Any]]:
        """The events not returned before (at most about `limit`), oldest first.
        ``behind=False`` reads only after the newest stamp seen (a cheap read between
        re-reads of the window); ``load=False`` marks them read without loading
        them (a reader starting now that ignores the past)."""
        low = self.floor() if behind else self.newest
        out: list[dict[str, Any]] = []
        while limit is None or len(out) < limit:
            listed = await self.events.seqs_after(low, channel=self.channel,
                                                  exclude_names=self.exclude_names,
                                                  limit=self.batch)
            fresh = [(seq, i) for seq, i in listed if i not in self.seen]
            if load and fresh:
                loaded = {d["_id"]: d for d in await self.events.by_ids(
                    [i for _, i in fresh], self.projection)}
                out += [loaded[i] for _, i in fresh if i in loaded]
            self.seen.update((i, seq) for seq, i in fresh)
            if listed:
                low = listed[-1][0]
                self.newest = low if self.newest is None else max(self.newest, low)
            if len(listed) < self.batch:
                break
        floor = self.floor()
        if floor is not None:
            self.seen = {i: seq for i, seq in self.seen.items() if seq > floor}
        return out
