"""Queries on sys.queue and sys.journal: every read and write of job documents.

Each state change is one `transition`: a single ``find_one_and_update`` whose
filter names the job, the states it may leave and, for a worker's writes, the
lease token, and whose update sets the new fields and appends the event to the
job's ``outbox`` in the same write. Every write that changes a job increments its
version ``v`` (absent: 0), all but two that change nothing a writer decides on: a
lease's heartbeat (only the holder moves the lease's times, and keeps them in its
copy) and the pull of relayed events from the outbox (they are in sys.event: one
left in a writer's copy and written back is relayed again, and sys.event keeps the
first). A writer that knows a job as a read or write left it fences its next
write by ``{_id, v}``, "unchanged since", one condition in place of one per field
that may change (`claim_each` for candidates just read or seen inserted,
`transition_unchanged` for jobs a worker holds, as plain updates in one bulk).
`relay` then copies
the outbox into sys.event (under the event ids fixed in advance) and pulls it;
`sweep_outboxes` does that for jobs whose writer died in between. Final jobs move
to sys.journal by an insert there (a copy already there, from a move cut short,
replaced) followed by a delete here, so that a job is never in neither
collection; the queue's sweep completes moves cut short.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pymongo.errors
from bson import ObjectId
from pymongo import ReplaceOne, ReturnDocument, UpdateOne

from monq.core.errors import Conflict
from monq.core.store import Store, layout
from monq.core.store.events import EventStore

MAINTENANCE_ID = "maintenance"
VERSION = "v"  # the count of writes that changed a job: see the module's docstring
CLAIM_ORDER = [("priority", -1), ("_id", 1)]  # the most urgent first
RUNNING = "running"  # the one state the store itself names: leases exist only there


@dataclass(frozen=True)
class JobFilter:
    """What a listing may filter on: typed values, never a client's query."""

    states: tuple[str, ...] = ()
    name_glob: str | None = None
    number: int | None = None
    worker: str | None = None
    enqueued_after: datetime | None = None
    enqueued_before: datetime | None = None
    names: tuple[str, ...] | None = None  # restrict to these names (permissions)


def glob_regex(pattern: str) -> str:
    """An anchored regular expression matching the glob `pattern` (``*`` and ``?``)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return "^" + "".join(parts) + "$"


def _dropping_update(events: Sequence[dict[str, Any]], drop: Sequence[ObjectId],
                     set_fields: dict[str, Any], unset: Iterable[str], inc: dict[str, int],
                     ) -> list[dict[str, Any]]:
    """The update of `JobStore.transition` as a pipeline, which may both append to the
    outbox and drop from it in one write (an update document may not ``$push`` and
    ``$pull`` one path). Values are literals: a job's data may hold ``$`` strings."""
    stage: dict[str, Any] = {key: {"$literal": value} for key, value in set_fields.items()}
    stage.update({key: {"$add": [{"$ifNull": [f"${key}", 0]}, n]} for key, n in inc.items()})
    stage["outbox"] = {"$concatArrays": [
        {"$filter": {"input": {"$ifNull": ["$outbox", []]}, "as": "event",
                     "cond": {"$not": [{"$in": ["$$event._id", list(drop)]}]}}},
        {"$literal": list(events)}]}
    pipeline: list[dict[str, Any]] = [{"$set": stage}]
    if unset:
        pipeline.append({"$unset": list(unset)})
    return pipeline


def _transition_update(events: Sequence[dict[str, Any]], drop: Sequence[ObjectId],
                       set_fields: dict[str, Any], unset: Iterable[str], inc: dict[str, int]
                       ) -> dict[str, Any] | list[dict[str, Any]]:
    """The update of one state change: set the fields, append the events to the
    outbox in time order, drop from it the events `drop` (relayed already), and
    count the write in the version ``v``."""
    events = sorted(events, key=lambda e: e["_id"])  # in time order
    inc = {**inc, VERSION: 1}
    if drop:
        return _dropping_update(events, drop, set_fields, unset, inc)
    update: dict[str, Any] = {"$push": {"outbox": {"$each": events}}}
    if set_fields:
        update["$set"] = set_fields
    if unset:
        update["$unset"] = dict.fromkeys(unset, "")
    update["$inc"] = inc
    return update


@dataclass(frozen=True)
class HeldWrite:
    """One worker's state change of a job it holds, for `JobStore.transition_unchanged`:
    the job's version as the worker's last write left it, the fields it sets, the
    outbox after it (what was not relayed yet, then its events) and the id of the
    change's own event."""

    job_id: ObjectId
    version: int | None
    set_fields: dict[str, Any]
    outbox: Sequence[dict[str, Any]]
    event_id: ObjectId


def version_of(doc: Mapping[str, Any]) -> int | None:
    """The job's version as read (None: never written since its insert), for a fence."""
    return doc.get(VERSION)


def unchanged(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The filter of a write fenced by the job as `doc` shows it: its id and version."""
    return {"_id": doc["_id"], VERSION: version_of(doc)}


def next_version(doc: Mapping[str, Any]) -> int:
    return (version_of(doc) or 0) + 1


class JobStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue = store.collection(layout.QUEUE)
        self.journal = store.collection(layout.JOURNAL)
        self.workers = store.collection(layout.WORKER)
        self.events = EventStore(store)

    # Writing ------------------------------------------------------------------
    async def insert(self, docs: Sequence[dict[str, Any]]) -> None:
        async with self.store.errors():
            try:
                await self.queue.insert_many(list(docs), ordered=True)
            except pymongo.errors.BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if errors and errors[0].get("code") == 11000:
                    key = errors[0].get("keyValue") or {}
                    raise Conflict(f"a job with the same {', '.join(key) or 'key'} is "
                                   f"already queued") from exc
                raise

    async def transition(self, job_id: ObjectId, *, sources: Iterable[str],
                         event: dict[str, Any], token: str | None = None,
                         set_fields: dict[str, Any] | None = None,
                         unset: Iterable[str] = (), inc: dict[str, int] | None = None,
                         requires: Mapping[str, Any] | None = None,
                         more_events: Sequence[dict[str, Any]] = (),
                         drop: Sequence[ObjectId] = (),
                         ) -> dict[str, Any] | None:
        """Apply one state change to a job in one of the states `sources` (holding the
        lease `token`, with the field values `requires`), appending `event` (and
        `more_events`) to its outbox and dropping from it the events `drop` (ones
        already in sys.event); the job after it, or None when the filter misses."""
        query: dict[str, Any] = {"_id": job_id, "state": {"$in": [str(s) for s in sources]}}
        if token is not None:
            query["locked.token"] = token
        if requires:
            query.update(requires)
        update = _transition_update([event, *more_events], drop, set_fields or {}, unset,
                                    inc or {})
        async with self.store.errors():
            return await self.queue.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER)

    async def transition_unchanged(self, writes: Sequence[HeldWrite]) -> set[ObjectId]:
        """`transition` for several jobs a worker holds, in one bulk write of plain
        updates (no document comes back: on MongoDB, as many updates cost as little
        as one; on the embedded server an update by ``_id`` is served by the index
        where ``findAndModify`` scans). Each applies only while the job is as its
        writer's last write left it: its version unchanged (no other writer, no
        sweep, no kill or removal asked for since), so that the writer knows the job
        after it without reading it back, and sets the outbox whole. The ids of the
        jobs written; the others are for `transition`, which returns what changed."""
        if not writes:
            return set()
        ops = [UpdateOne({"_id": w.job_id, VERSION: w.version},
                         {"$set": {**w.set_fields, "outbox": list(w.outbox)},
                          "$inc": {VERSION: 1}})
               for w in writes]
        async with self.store.errors():
            result = await self.queue.bulk_write(ops, ordered=False)
            if result.modified_count == len(writes):
                return {w.job_id for w in writes}
            if result.modified_count == 0:
                return set()
            # which: those whose outbox holds the event their write appended
            written = await self.queue.find(
                {"_id": {"$in": [w.job_id for w in writes]},
                 "outbox._id": {"$in": [w.event_id for w in writes]}},
                {"_id": 1}).to_list(None)
        return {d["_id"] for d in written}

    @staticmethod
    def _claimable(sources: Iterable[str], requires: Mapping[str, Any], now: datetime,
                   pool: str, tags: Sequence[str], excluded_names: Sequence[str]
                   ) -> dict[str, Any]:
        query: dict[str, Any] = {
            "state": {"$in": [str(s) for s in sources]}, "query_at": {"$lte": now},
            **requires, "pool": pool,
            "tags": {"$not": {"$elemMatch": {"$nin": list(tags)}}},
        }
        if excluded_names:
            query["name"] = {"$nin": list(excluded_names)}
        return query

    @staticmethod
    def _claiming(set_fields: dict[str, Any], events: Sequence[dict[str, Any]]
                  ) -> dict[str, Any]:
        return {"$set": set_fields, "$inc": {"attempts_left": -1, VERSION: 1},
                "$push": {"outbox": {"$each": list(events)}}}

    async def claim(self, *, sources: Iterable[str], requires: Mapping[str, Any],
                    now: datetime, pool: str, tags: Sequence[str],
                    excluded_names: Sequence[str], set_fields: dict[str, Any],
                    events: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        """Take the most urgent job (highest priority, then oldest) in one of the
        states `sources` with the field values `requires`, due by `now`, of the pool
        `pool`, whose tags are all among `tags` and whose name is not excluded; set
        `set_fields` on it, take one attempt and push the events. The job after it."""
        query = self._claimable(sources, requires, now, pool, tags, excluded_names)
        async with self.store.errors():
            return await self.queue.find_one_and_update(
                query, self._claiming(set_fields, events), sort=CLAIM_ORDER,
                return_document=ReturnDocument.AFTER)

    async def claim_candidates(self, *, sources: Iterable[str], requires: Mapping[str, Any],
                               now: datetime, pool: str, tags: Sequence[str],
                               excluded_names: Sequence[str], limit: int
                               ) -> list[dict[str, Any]]:
        """The `limit` most urgent jobs `claim` would take, in its order (the
        ``claim`` index), not taken yet: `claim_each` takes them."""
        query = self._claimable(sources, requires, now, pool, tags, excluded_names)
        async with self.store.errors():
            return await self.queue.find(query).sort(CLAIM_ORDER).limit(limit).to_list(None)

    async def claim_each(self, claims: Sequence[tuple[dict[str, Any], dict[str, Any],
                                                      Sequence[dict[str, Any]]]]
                         ) -> list[dict[str, Any]]:
        """Take the candidates ``(doc, set_fields, events)`` (claimable when read)
        that are still as read, each by its own update fenced by the job's version,
        all in one bulk write; the jobs taken, after it (each `set_fields` holds its
        own ``locked.token``). When all were taken, the candidates with the update
        applied; else the taken ones read back by their tokens (another worker took
        the others meanwhile, or held them, or asked for their removal).

        A job unchanged since the read is claimable still: what it was read for
        changes only by a write (each counts in its version), but for its due time,
        which only passes."""
        if not claims:
            return []
        ops = [UpdateOne(unchanged(doc), self._claiming(fields, events))
               for doc, fields, events in claims]
        async with self.store.errors():
            result = await self.queue.bulk_write(ops, ordered=False)
            if result.modified_count < len(claims):
                if result.modified_count == 0:
                    return []
                tokens = [fields["locked"]["token"] for _, fields, _ in claims]
                return await self.queue.find(
                    {"_id": {"$in": [doc["_id"] for doc, _, _ in claims]},
                     "locked.token": {"$in": tokens}}).sort(CLAIM_ORDER).to_list(None)
        taken = []
        for doc, fields, events in claims:
            after = {**doc, **fields, "attempts_left": doc["attempts_left"] - 1,
                     VERSION: next_version(doc),
                     "outbox": [*(doc.get("outbox") or []), *events]}
            taken.append(after)
        return taken

    async def relay_many(self, docs: Sequence[dict[str, Any]], *,
                         journal: bool = False) -> None:
        """`relay` for many jobs (queued, or in the journal) in two round trips."""
        events = [e for d in docs for e in self.outbox_events(d)]
        if not events:
            return
        await self.events.insert(events)
        collection = self.journal if journal else self.queue
        async with self.store.errors():
            await collection.update_many(
                {"_id": {"$in": [d["_id"] for d in docs]}},
                {"$pull": {"outbox": {"_id": {"$in": [e["_id"] for e in events]}}}})

    @staticmethod
    def outbox_events(doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The events in the job's outbox as sys.event holds them (naming the job)."""
        header = {"_id": doc["_id"], "number": doc["number"], "name": doc["name"]}
        return [{**e, "data": {**header, **e.get("data", {})}}
                for e in doc.get("outbox") or []]

    async def relay(self, doc: dict[str, Any], *, journal: bool = False,
                    pull: bool = True) -> None:
        """Copy the job's outbox into sys.event and pull what was copied (not needed
        for a job about to move to the journal, which leaves its outbox behind)."""
        outbox = doc.get("outbox") or []
        if not outbox:
            return
        await self.events.insert(self.outbox_events(doc))
        if pull:
            await self.pull(doc["_id"], [e["_id"] for e in outbox], journal=journal)

    async def pull(self, job_id: ObjectId, event_ids: Sequence[ObjectId], *,
                   journal: bool = False) -> None:
        """Drop these events (relayed) from the job's outbox."""
        collection = self.journal if journal else self.queue
        async with self.store.errors():
            await collection.update_one(
                {"_id": job_id}, {"$pull": {"outbox": {"_id": {"$in": list(event_ids)}}}})

    async def move_to_journal(self, doc: dict[str, Any], final: Iterable[str]) -> None:
        """Move a finished job (in one of the `final` states) to sys.journal."""
        await self.move_many_to_journal([doc], final)

    async def move_many_to_journal(self, docs: Sequence[dict[str, Any]],
                                   final: Iterable[str]) -> None:
        """Move finished jobs (in one of the `final` states) to sys.journal: one
        insert there, one delete here. A move is redone after a crash between the
        two, so a job already in the journal is replaced by this copy (the later
        one: a restart noted on it meanwhile, say), in a second write for those
        alone; a plain insert costs the server less than an upsert, on MongoDB as
        on the embedded server."""
        if not docs:
            return
        records = [{k: v for k, v in d.items() if k != "outbox"} for d in docs]
        async with self.store.errors():
            try:
                await self.journal.insert_many(records, ordered=False)
            except pymongo.errors.BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != 11000 for e in errors):
                    raise
                there = [records[e["index"]] for e in errors]
                await self.journal.bulk_write(
                    [ReplaceOne({"_id": r["_id"]}, r, upsert=True) for r in there],
                    ordered=False)
            await self.queue.delete_many({"_id": {"$in": [d["_id"] for d in docs]},
                                          "state": {"$in": [str(s) for s in final]}})

    async def set_restart_child(self, job_id: ObjectId, *, sources: Iterable[str],
                                requires: Mapping[str, Any], child_id: ObjectId,
                                event: dict[str, Any]) -> dict[str, Any] | None:
        """Note on a finished job (in one of `sources`, with the field values
        `requires`) the job that restarts it, with the event of the restart; the job
        after it, or None when the filter misses."""
        async with self.store.errors():
            return await self.journal.find_one_and_update(
                {"_id": job_id, "state": {"$in": [str(s) for s in sources]}, **requires},
                {"$set": {"child_id": child_id}, "$push": {"outbox": event},
                 "$inc": {VERSION: 1}},
                return_document=ReturnDocument.AFTER)

    # Reading ------------------------------------------------------------------
    async def delete_finished_before(self, cutoff: datetime, limit: int) -> int:
        """Delete at most `limit` journal entries finished before `cutoff` (the
        ``finished_at`` index); ones whose events are not relayed yet are kept."""
        query: dict[str, Any] = {"finished_at": {"$lt": cutoff}, "outbox.0": {"$exists": False}}
        return await self.store.delete_batch(self.journal, query, "finished_at", limit)

    async def get(self, job_id: ObjectId) -> dict[str, Any] | None:
        async with self.store.errors():
            doc = await self.queue.find_one({"_id": job_id})
            if doc is None:
                doc = await self.journal.find_one({"_id": job_id})
        return doc

    async def get_by_number(self, number: int) -> dict[str, Any] | None:
        async with self.store.errors():
            doc = await self.queue.find_one({"number": number})
            if doc is None:
                doc = await self.journal.find_one({"number": number})
        return doc

    async def in_both(self, job_id: ObjectId) -> tuple[bool, bool]:
        async with self.store.errors():
            queued = await self.queue.count_documents({"_id": job_id}, limit=1)
            journaled = await self.journal.count_documents({"_id": job_id}, limit=1)
        return bool(queued), bool(journaled)

    def _query(self, spec: JobFilter, *, finished: bool) -> dict[str, Any]:
        """The query for `spec` in the journal (`finished`) or sys.queue."""
        query: dict[str, Any] = {}
        states = list(spec.states) if spec.states else None
        if spec.worker and not finished:
            # in sys.queue only running jobs hold a lease: few, found by their state
            states = [s for s in states or [RUNNING] if s == RUNNING]
        if states is not None:
            query["state"] = {"$in": states}
        if spec.name_glob:
            query["name"] = {"$regex": glob_regex(spec.name_glob)}
        if spec.names is not None:
            query.setdefault("$and", []).append({"name": {"$in": list(spec.names)}})
        if spec.number is not None:
            query["number"] = spec.number
        if spec.worker:
            query["locked.worker"] = spec.worker
        if spec.enqueued_after or spec.enqueued_before:
            span: dict[str, Any] = {}
            if spec.enqueued_after:
                span["$gte"] = spec.enqueued_after
            if spec.enqueued_before:
                span["$lt"] = spec.enqueued_before
            query["enqueued.at"] = span
        return query

    async def page(self, spec: JobFilter, *, finished: bool = False, skip: int = 0,
                   limit: int = 50, sort: str = "number", descending: bool = False,
                   ) -> tuple[list[dict[str, Any]], int]:
        """One page of jobs, and how many match in all."""
        collection = self.journal if finished else self.queue
        query = self._query(spec, finished=finished)
        direction = -1 if descending else 1
        async with self.store.errors():
            total = await collection.count_documents(query)
            docs = await collection.find(query, {"outbox": 0}).sort(
                [(sort, direction), ("_id", direction)]).skip(skip).limit(limit).to_list(None)
        return docs, total

    async def distinct_names(self, *, finished: bool = False) -> list[str]:
        """The job names in the queue (or the journal)."""
        collection = self.journal if finished else self.queue
        async with self.store.errors():
            return sorted(await collection.distinct("name"))

    # Workers ------------------------------------------------------------------
    async def heartbeat(self, leases: Sequence[tuple[ObjectId, str]], now: datetime,
                        zombie_time_s: dict[ObjectId, float]) -> None:
        """Move the leases' times on, a write that leaves the jobs' versions as they
        are: only the holder writes it, and keeps the times in its copy of the job."""
        if not leases:
            return
        ops = [UpdateOne({"_id": job_id, "locked.token": token, "state": RUNNING},
                         {"$set": {"locked.heartbeat": now,
                                   "locked.expires": now + timedelta(
                                       seconds=zombie_time_s.get(job_id, 30.0))}})
               for job_id, token in leases]
        async with self.store.errors():
            await self.queue.bulk_write(ops, ordered=False)

    async def next_due(self, *, sources: Iterable[str], requires: Mapping[str, Any],
                       pool: str) -> datetime | None:
        """When the next job of the pool in one of `sources` (with the field values
        `requires`) is due, by its ``query_at`` (the ``due`` index); None if none."""
        query = {"state": {"$in": [str(s) for s in sources]}, **requires, "pool": pool}
        async with self.store.errors():
            doc = await self.queue.find_one(query, {"query_at": 1}, sort=[("query_at", 1)])
        return doc.get("query_at") if doc else None

    async def lease_view(self, job_ids: Sequence[ObjectId]) -> list[dict[str, Any]]:
        if not job_ids:
            return []
        async with self.store.errors():
            return await self.queue.find(
                {"_id": {"$in": list(job_ids)}},
                {"state": 1, "locked.token": 1, "killed_at": 1, "removed_at": 1}).to_list(None)

    async def running(self, limit: int = 1000) -> list[dict[str, Any]]:
        async with self.store.errors():
            return await self.queue.find({"state": RUNNING},
                                         {"outbox": 0}).limit(limit).to_list(None)

    # Sweeps -------------------------------------------------------------------
    async def with_outbox(self, before: datetime, *, journal: bool = False,
                          limit: int = 100) -> list[dict[str, Any]]:
        collection = self.journal if journal else self.queue
        async with self.store.errors():
            return await collection.find(
                {"outbox.0": {"$exists": True}, "outbox.0.created": {"$lt": before}}
            ).limit(limit).to_list(None)

    async def stranded(self, *, now: datetime, final: Iterable[str],
                       finished_before: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """What the sweep repairs besides outboxes, normally nothing, in one query
        (each part served by its own index): final jobs finished before
        `finished_before` (the ``claim`` index), and running jobs whose lease expired
        by `now` (``lease_expiry``)."""
        query = {"$or": [
            {"state": {"$in": list(final)}, "finished_at": {"$lt": finished_before}},
            {"locked.expires": {"$lt": now}, "state": RUNNING},
        ]}
        async with self.store.errors():
            return await self.queue.find(query).limit(limit).to_list(None)

    async def stopped_waiting(self, waiting: Iterable[str], limit: int = 100
                              ) -> list[dict[str, Any]]:
        """Jobs in a `waiting` state whose kill or removal was asked for: monq leaves
        none (a write that would put a job back to waiting misses when a stop was
        asked for), but an older version could, and a hand could. No index of its
        own serves this (only the state's prefix of ``claim``): the sweep asks once
        per process."""
        query = {"state": {"$in": list(waiting)},
                 "$or": [{"killed_at": {"$type": "date"}}, {"removed_at": {"$type": "date"}}]}
        async with self.store.errors():
            return await self.queue.find(query).limit(limit).to_list(None)

    async def dependents(self, job_id: ObjectId) -> list[dict[str, Any]]:
        async with self.store.errors():
            return await self.queue.find({"wait_for": job_id}, {"outbox": 0}).to_list(None)

    async def mark_has_dependents(self, job_ids: Sequence[ObjectId]) -> None:
        """Note on jobs that others wait for them, so that only those look for dependents."""
        async with self.store.errors():
            await self.queue.update_many({"_id": {"$in": list(job_ids)}},
                                         {"$set": {"has_dependents": True},
                                          "$inc": {VERSION: 1}})

    async def unblock(self, job_id: ObjectId) -> None:
        """Drop a completed job from its dependents' wait lists; free those left with none."""
        async with self.store.errors():
            await self.queue.update_many({"wait_for": job_id}, {"$pull": {"wait_for": job_id},
                                                                "$inc": {VERSION: 1}})
            await self.queue.update_many({"blocked": True, "wait_for": {"$size": 0}},
                                         {"$set": {"blocked": False}, "$inc": {VERSION: 1}},
                                         hint=layout.WAIT_FOR_INDEX)

    async def blocked(self, limit: int = 100) -> list[dict[str, Any]]:
        """Jobs still waiting for others. Only jobs enqueued with dependencies have
        ``wait_for``, so the sparse index on it holds every blocked job: the hint makes
        the server go by it (a planner uses a sparse index only when told)."""
        async with self.store.errors():
            return await self.queue.find({"blocked": True}, {"wait_for": 1}).hint(
                layout.WAIT_FOR_INDEX).limit(limit).to_list(None)

    async def states_of(self, job_ids: Sequence[ObjectId]) -> dict[ObjectId, str]:
        """The state of each job, queued or finished (missing ones are absent)."""
        return await self._field_of(job_ids, "state")

    async def names_of(self, job_ids: Sequence[ObjectId]) -> dict[ObjectId, str]:
        """The name of each job, queued or finished (missing ones are absent), in one
        query per collection however many ids are asked for."""
        return await self._field_of(job_ids, "name")

    async def _field_of(self, job_ids: Sequence[ObjectId], name: str) -> dict[ObjectId, str]:
        out: dict[ObjectId, str] = {}
        async with self.store.errors():
            for collection in (self.journal, self.queue):
                async for doc in collection.find({"_id": {"$in": list(job_ids)}},
                                                 {name: 1}):
                    out[doc["_id"]] = doc[name]
        return out

    # Maintenance --------------------------------------------------------------
    async def maintenance(self) -> dict[str, Any]:
        async with self.store.errors():
            return await self.workers.find_one({"_id": MAINTENANCE_ID}) or {}

    async def _maintain(self, update: dict[str, Any]) -> None:
        async with self.store.errors():
            await self.workers.update_one({"_id": MAINTENANCE_ID}, update, upsert=True)

    async def set_global_pause(self, on: bool) -> None:
        """Pause (or resume) every worker's claims."""
        await self._maintain({"$set": {"global": bool(on)}})

    async def pause_name(self, name: str) -> None:
        """No worker claims jobs of this name until `resume_name`."""
        await self._maintain({"$addToSet": {"names": name}})

    async def resume_name(self, name: str) -> None:
        await self._maintain({"$pull": {"names": name}})
