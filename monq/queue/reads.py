"""The read side of jobs and events: what people ask of jobs (one job, a page of the
queue or the journal, the job names, a job's events and log) and of sys.event (a
page of past events, what came after an id, a reconnecting client's replay, the
hub's follower).

Handlers and CLI commands ask these, never a store: the store (`monq.core.store`)
builds the queries, `Queue` makes the state changes, and this module answers
questions. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from bson import ObjectId

from monq.core.errors import NotFound
from monq.core.store import Store
from monq.core.store.events import EventReader, EventStore
from monq.core.store.jobs import JobFilter, JobStore
from monq.core.store.logs import LogStore
from monq.queue.model import JobRecord
from monq.queue.queue import parse_job_id

__all__ = ["EventReads", "JobFilter", "JobReads", "log_line"]


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
        key = parse_job_id(job)
        doc = (await self.jobs.get_by_number(key) if isinstance(key, int)
               else await self.jobs.get(key))
        if doc is None:
            raise NotFound(f"no job {job}")
        return JobRecord.from_document(doc)

    async def page(self, spec: JobFilter | None = None, *, finished: bool = False,
                   skip: int = 0, limit: int = 50, sort: str = "number",
                   descending: bool = False) -> tuple[list[JobRecord], int]:
        """One page of the queue (or, `finished`, the journal), and how many match."""
        docs, total = await self.jobs.page(spec or JobFilter(), finished=finished, skip=skip,
                                           limit=limit, sort=sort, descending=descending)
        return [JobRecord.from_document(d) for d in docs], total

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

    async def page(self, channels: Sequence[str] | None, job_ids: Sequence[ObjectId], *,
                   start: datetime | None, end: datetime | None, newest_first: bool,
                   skip: int, limit: int, after: ObjectId | None = None
                   ) -> tuple[list[dict[str, Any]], int]:
        """A page of past events of some channels (None: every shared one) or jobs."""
        return await self.events.page(channels, job_ids, start=start, end=end,
                                      newest_first=newest_first, skip=skip, limit=limit,
                                      after=after)

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
