"""The read side of jobs and events: what people ask of jobs (one job, a page of the
queue or the journal, the job names, a job's events and log) and of sys.event (a
page of past events, what came after an id, a reconnecting client's replay, the
hub's follower).

Handlers and CLI commands ask these, never a store: the store (`monq.core.store`)
builds the queries, `Queue` makes the state changes, and this module answers
questions. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from monq.core.errors import NotFound, ValidationError
from monq.core.ids import maybe_object_id
from monq.core.store import Store
from monq.core.store.events import EventReader, EventStore
from monq.core.store.jobs import JobFilter, JobStore
from monq.core.store.listings import EventListings, JobListings
from monq.core.store.logs import LogStore
from monq.queue.model import JobRecord

__all__ = ["EventPage", "EventReads", "JobFilter", "JobPage", "JobReads", "log_line"]


@dataclass(frozen=True)
class JobPage:
    """A page of jobs; `total` counts at most the cap (`capped` says it stopped
    there); `next_after` is the last job's id when more follow, else None."""

    jobs: list[JobRecord]
    total: int
    capped: bool
    next_after: ObjectId | None


@dataclass(frozen=True)
class EventPage:
    """A page of events; `next_key` is the last event's id when more follow (pass it
    as ``before`` newest first, as ``after`` oldest first), else None."""

    events: list[dict[str, Any]]
    total: int
    capped: bool
    next_key: ObjectId | None


def parse_job_id(value: str | int | ObjectId) -> ObjectId | int:
    """A job id or number from what a person typed (``12``, ``#12``, an id)."""
    if isinstance(value, ObjectId | int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lstrip("#")
    # ASCII digits only ("³" is a digit to str.isdigit but not to int), and no more
    # than MongoDB's integers hold
    if text.isascii() and text.isdigit() and int(text) < 2**63:
        return int(text)
    found = maybe_object_id(text)
    if found is None:
        raise ValidationError(f"not a job id or number: {value!r}", field="id")
    return found


async def find_job(jobs: JobStore, job: str | int | ObjectId) -> JobRecord:
    """The job by id or number, queued or finished; `NotFound` when there is none."""
    key = parse_job_id(job)
    doc = await jobs.get_by_number(key) if isinstance(key, int) else await jobs.get(key)
    if doc is None:
        raise NotFound(f"no job {job}")
    return JobRecord.from_document(doc)


def log_line(line: dict[str, Any]) -> dict[str, Any]:
    """One job log line as the API and the CLI show it."""
    return {"created": line["created"], "level": line["level"], "message": line["message"],
            "extra": line.get("extra") or {}}


class JobReads:
    """Jobs in sys.queue and sys.journal, and their logs and events."""

    def __init__(self, store: Store) -> None:
        self.jobs = JobStore(store)
        self.logs = LogStore(store)
        self.event_store = EventStore(store)

    async def get(self, job: str | int | ObjectId) -> JobRecord:
        """One job by id or number (``#12`` too), queued or finished."""
        return await find_job(self.jobs, job)

    async def listing(self, spec: JobFilter, *, finished: bool, sort: str, descending: bool,
                      limit: int, count_cap: int, skip: int = 0,
                      after: ObjectId | None = None,
                      visible: Callable[[str], bool] | None = None) -> JobPage:
        """A page of jobs in `sort` order, `skip` jobs in or after the job `after`, which
        must exist and be `visible` (a name predicate; None: every job) or it is a
        `ValidationError` of ``after`` (a job one may not see is as unknown as a
        missing one)."""
        listings = JobListings(self.jobs.store)
        anchor = None
        if after is not None:
            anchor = await listings.anchor(after, finished)
            if anchor is None or (visible is not None and not visible(anchor["name"])):
                raise ValidationError(f"parameter 'after': no job {after}", field="after")
        found = await listings.page(spec, finished=finished, sort=sort, descending=descending,
                                    limit=limit, skip=skip, after=anchor,
                                    count_cap=count_cap)
        jobs = [JobRecord.from_document(d) for d in found.docs]
        return JobPage(jobs, found.total, found.capped,
                       jobs[-1].id if found.more and jobs else None)

    async def names(self, *, finished: bool | None = False) -> list[str]:
        """The job names in the queue, the journal (`finished`), or both (None)."""
        if finished is None:
            return sorted(set(await self.jobs.distinct_names())
                          | set(await self.jobs.distinct_names(finished=True)))
        return await self.jobs.distinct_names(finished=finished)

    async def names_of(self, job_ids: Sequence[ObjectId]) -> dict[ObjectId, str]:
        """The names of these jobs (those that exist), in one query."""
        return await self.jobs.names_of(job_ids)

    async def events(self, job_id: ObjectId) -> list[dict[str, Any]]:
        """A job's events, oldest first."""
        return await self.event_store.for_job(job_id)

    async def log(self, job_id: ObjectId, *, after: ObjectId | None = None, skip: int = 0,
                  limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        """A job's log lines (after the line `after`), and how many it has in all."""
        return await self.logs.read(job_id, after=after, skip=skip, limit=limit)


class EventReads:
    """Past events of sys.event, as clients page, poll and replay them."""

    def __init__(self, store: Store) -> None:
        self.events = EventStore(store)

    async def listing(self, channels: Sequence[str] | None, job_ids: Sequence[ObjectId], *,
                      start: datetime | None, end: datetime | None, newest_first: bool,
                      skip: int, limit: int, count_cap: int, after: ObjectId | None = None,
                      before: ObjectId | None = None) -> EventPage:
        """A page of past events (see `page`), between the events `after` and `before`,
        its total counted up to `count_cap`."""
        found = await EventListings(self.events.store).page(
            channels, job_ids, start=start, end=end, newest_first=newest_first, skip=skip,
            limit=limit, after=after, before=before, count_cap=count_cap)
        return EventPage(found.docs, found.total, found.capped,
                         found.docs[-1]["_id"] if found.more and found.docs else None)

    async def after(self, last_id: ObjectId | None, *, channels: Sequence[str] | None,
                    names: Sequence[str] | None, job_id: ObjectId | None,
                    limit: int) -> list[dict[str, Any]]:
        """Events after `last_id`, oldest first (for clients that poll)."""
        return await self.events.after(last_id, channels=channels, names=names,
                                       job_id=job_id, limit=limit)

    async def replay(self, since: ObjectId, channels: Sequence[str],
                     job_ids: Sequence[ObjectId], limit: int) -> list[dict[str, Any]]:
        """What a reconnecting client of these interests missed after `since`."""
        return await self.events.replay(since, channels, job_ids, limit)

    async def latest_id(self) -> ObjectId | None:
        return await self.events.latest_id()

    async def latest_seq(self) -> ObjectId | None:
        return await self.events.latest_seq()

    def follower(self, bound_s: float, batch: int) -> EventReader:
        """A reader that follows sys.event in insertion order (see `EventReader`)."""
        return EventReader(self.events, bound_s, batch=batch)

    def changes(self, resume_after: Any = None
                ) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        """The change stream of inserts into sys.event (see `EventStore.changes`)."""
        return self.events.changes(resume_after)
