"""Listings whose cost does not grow with the collection: pages of jobs (sys.queue or
sys.journal) and of events (sys.event), reached by page number or by keyset (the page
after an anchor document), with the total counted only up to a cap.

A keyset page reads from the anchor's place in the sort's index onwards, so the
ten-thousandth page costs what the first does; a skip walks past every document
before it. The total is ``count_documents`` with a ``limit``: past the cap it stops
and says so (``capped``), so a count over millions of finished jobs costs what a count
over the cap does.

Every sort is backed by an index (`monq.core.store.layout`): ``number`` by the unique
``number`` index of both collections (unique, so it needs no tie-breaker), the others
by ``(field, _id)`` indexes of the journal; sys.queue holds only unfinished jobs and
sorts those by priority or enqueue time without an index of their own, as the claim
needs none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from monq.core.store import Store
from monq.core.store.events import EventStore
from monq.core.store.jobs import JobFilter, JobStore

UNIQUE_SORTS = frozenset({"number"})


@dataclass(frozen=True)
class Listing:
    """One page: its documents, the total (at most the cap), whether the total was
    capped, and whether more documents follow the page's last one."""

    docs: list[dict[str, Any]]
    total: int
    capped: bool
    more: bool


async def count_upto(store: Store, collection: AsyncCollection[dict[str, Any]],
                     query: dict[str, Any], cap: int) -> tuple[int, bool]:
    """How many documents match, counting at most `cap`: ``(cap, True)`` when there
    are more. Without a filter the collection's own count (metadata, no scan) decides
    first whether there are more; it may be off after an unclean shutdown, so a figure
    under the cap is counted exactly."""
    async with store.errors():
        if not query and await collection.estimated_document_count() > cap:
            return cap, True
        found = await collection.count_documents(query, limit=cap + 1)
    return (cap, True) if found > cap else (found, False)


async def page_and_count(store: Store, collection: AsyncCollection[dict[str, Any]],
                         window: dict[str, Any], query: dict[str, Any],
                         sort: list[tuple[str, int]], skip: int, limit: int, cap: int
                         ) -> Listing:
    """The page (`window` in `sort` order) and the count of `query`, asked at once on
    two connections: the reply waits for the slower, not for both."""
    async def fetch() -> list[dict[str, Any]]:
        async with store.errors():
            return await collection.find(window, {"outbox": 0}).sort(sort).skip(
                skip).limit(limit + 1).to_list(None)

    docs, (total, capped) = await asyncio.gather(
        fetch(), count_upto(store, collection, query, cap))
    return Listing(docs[:limit], total, capped, len(docs) > limit)


def order(sort: str, descending: bool) -> list[tuple[str, int]]:
    """The sort of a job listing by `sort`: the field, then the id where the field
    does not tell jobs apart."""
    direction = -1 if descending else 1
    if sort in UNIQUE_SORTS:
        return [(sort, direction)]
    return [(sort, direction), ("_id", direction)]


def _after(field: str, value: Any, anchor: ObjectId, descending: bool) -> dict[str, Any]:
    """Documents that come after the anchor (`value` in `field`, then its `_id`) in
    the sort's order."""
    beyond = "$lt" if descending else "$gt"
    if field in UNIQUE_SORTS:
        return {field: {beyond: value}}
    return {"$or": [{field: {beyond: value}}, {field: value, "_id": {beyond: anchor}}]}


class JobListings:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.jobs = JobStore(store)

    def _collection(self, finished: bool) -> AsyncCollection[dict[str, Any]]:
        return self.jobs.journal if finished else self.jobs.queue

    async def anchor(self, job_id: ObjectId, finished: bool) -> dict[str, Any] | None:
        """The job a keyset page starts after, from the listing's collection or (it may
        have finished since the client saw it) the other one."""
        async with self.store.errors():
            for collection in (self._collection(finished), self._collection(not finished)):
                doc = await collection.find_one({"_id": job_id}, {"outbox": 0})
                if doc is not None:
                    return doc
        return None

    async def page(self, spec: JobFilter, *, finished: bool, sort: str, descending: bool,
                   limit: int, skip: int = 0, after: dict[str, Any] | None = None,
                   count_cap: int) -> Listing:
        """A page of jobs in `sort` order: `skip` documents in, or those after the job
        `after` (its document, from `anchor`)."""
        collection = self._collection(finished)
        query = self.jobs._query(spec, finished=finished)
        window = query
        if after is not None:
            value: Any = after
            for part in sort.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            window = {"$and": [query, _after(sort, value, after["_id"], descending)]}
        return await page_and_count(self.store, collection, window, query,
                                    order(sort, descending), skip, limit, count_cap)


class EventListings:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.events = EventStore(store)

    async def page(self, channels: Sequence[str] | None, job_ids: Sequence[ObjectId], *,
                   start: datetime | None, end: datetime | None, newest_first: bool,
                   skip: int, limit: int, after: ObjectId | None = None,
                   before: ObjectId | None = None, count_cap: int) -> Listing:
        """A page of past events of some channels (or jobs) in a time range, after the
        event `after` and before the event `before`, by ``_id`` (event ids carry their
        time, so the channel index serves range and order). The total counts the
        range without `after` and `before`: the size of what is paged through."""
        query = self.events._visible_query(channels, job_ids)
        span: dict[str, Any] = {}
        if start is not None:
            span["$gte"] = ObjectId.from_datetime(start)
        if end is not None:
            span["$lt"] = ObjectId.from_datetime(end)
        ranged = {"_id": span, **query} if span else query
        window = dict(span)
        if after is not None:
            window["$gt"] = max(after, window.get("$gt", after))
        if before is not None:
            window["$lt"] = min(before, window.get("$lt", before))
        keyed = {"_id": window, **query} if window else query
        return await page_and_count(self.store, self.events.events, keyed, ranged,
                                    [("_id", -1 if newest_first else 1)], skip, limit,
                                    count_cap)
