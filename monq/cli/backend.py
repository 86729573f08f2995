"""The one interface CLI commands ask: `Backend`, and its direct implementation on
MongoDB (`DirectBackend`, through monq/queue and monq/core/auth/accounts like the API).
The HTTP implementation is `monq.cli.remote.RemoteBackend`.

Both return what the HTTP API returns (JSON data: ISO times, ids as strings), so a
command's code and its ``--json`` output are the same in both modes.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bson import ObjectId

from monq.core.auth.accounts import ADMIN_ROLE, Accounts, parse_etag, parse_id, public
from monq.core.auth.permissions import ADMIN_PERMISSION, Principal
from monq.core.config import Config
from monq.core.errors import NotFound
from monq.core.ids import maybe_object_id
from monq.core.jsonio import jsonable
from monq.core.store import Store
from monq.history.reads import HistoryReads
from monq.queue.enqueue import Origin
from monq.queue.queue import Queue
from monq.queue.reads import EventReads, JobFilter, JobReads, log_line
from monq.queue.workers import list_workers

Json = dict[str, Any]
RECORD_PAGE = 1000
EVENT_BATCH = 1000


class Backend(Protocol):
    """The queue's and the accounts' operations the CLI needs."""

    # Jobs
    async def enqueue(self, name: str, args: Json, options: Json) -> Json: ...
    async def job(self, job_id: str) -> Json: ...
    async def jobs(self, *, states: Sequence[str], name: str | None, finished: bool,
                   limit: int) -> tuple[list[Json], int]: ...
    async def job_events(self, job_id: str) -> list[Json]: ...
    async def job_log(self, job_id: str, limit: int) -> list[Json]: ...
    async def act(self, action: str, job_id: str) -> Json: ...
    # Operations
    async def history(self, resolution: str, since: datetime) -> list[Json]: ...
    async def workers(self) -> list[Json]: ...
    async def events(self, after: str | None, *, channels: Sequence[str] | None,
                     names: Sequence[str] | None, job_id: str | None) -> list[Json]: ...
    async def maintenance(self) -> Json: ...
    async def set_maintenance(self, on: bool, name: str | None) -> Json: ...
    # Users and roles (records of kind "user" or "role")
    async def records(self, kind: str) -> list[Json]: ...
    async def record(self, kind: str, name: str) -> Json: ...
    async def create_record(self, fields: Json) -> Json: ...
    async def update_record(self, record: Json, fields: Json) -> Json: ...
    async def delete_record(self, record: Json) -> None: ...


def event_view(event: dict[str, Any]) -> Json:
    """An event as ``GET /jobs/{id}/events`` shows it."""
    return jsonable({"_id": event["_id"], "name": event["name"],
                     "channel": event.get("channel"), "created": event["created"],
                     "author": event.get("author"), "data": event.get("data") or {}})


def log_view(line: dict[str, Any]) -> Json:
    return jsonable(log_line(line))


def since_event_id(since: datetime) -> str:
    """An id below every event created at or after `since` (event ids begin with their
    second)."""
    return str(ObjectId.from_datetime(since))


def _event_id(value: str) -> ObjectId:
    found = maybe_object_id(value)
    if found is None:
        raise NotFound(f"no event {value!r}")
    return found


class DirectBackend:
    """MongoDB directly: whoever holds the database credentials acts as an admin, under
    their login name."""

    def __init__(self, store: Store, config: Config, user: str | None = None) -> None:
        self.store = store
        self.config = config
        self.user = user or getpass.getuser()
        self.queue = Queue(store, config, author=self.user,
                           origin=Origin(by=self.user, origin="cli"), lazy_enqueue=True)
        self.reads = JobReads(store)
        self.accounts = Accounts(store, config)
        self.principal = Principal(self.user, frozenset({ADMIN_PERMISSION}),
                                   frozenset({ADMIN_ROLE}))

    # Jobs -----------------------------------------------------------------------
    async def enqueue(self, name: str, args: Json, options: Json) -> Json:
        if isinstance(options.get("at"), str):
            options = {**options, "at": datetime.fromisoformat(options["at"])}
        return jsonable((await self.queue.enqueue(name, args, **options)).to_public())

    async def job(self, job_id: str) -> Json:
        return jsonable((await self.reads.get(job_id)).to_public())

    async def jobs(self, *, states: Sequence[str], name: str | None, finished: bool,
                   limit: int) -> tuple[list[Json], int]:
        spec = JobFilter(states=tuple(states), name_glob=name)
        found = await self.reads.listing(spec, finished=finished, sort="number",
                                         descending=False, limit=limit,
                                         count_cap=self.config.api.count_limit)
        return [jsonable(j.to_public()) for j in found.jobs], found.total

    async def job_events(self, job_id: str) -> list[Json]:
        job = await self.reads.get(job_id)
        return [event_view(e) for e in await self.reads.events(job.id)]

    async def job_log(self, job_id: str, limit: int) -> list[Json]:
        job = await self.reads.get(job_id)
        lines, _ = await self.reads.log(job.id, limit=limit)
        return [log_view(line) for line in lines]

    async def act(self, action: str, job_id: str) -> Json:
        return jsonable((await getattr(self.queue, action)(job_id)).to_public())

    # Operations -----------------------------------------------------------------
    async def history(self, resolution: str, since: datetime) -> list[Json]:
        docs, _ = await HistoryReads(self.store).page(resolution, since, None,
                                                      newest_first=False)
        return [jsonable({k: v for k, v in d.items() if k not in ("_id", "resolution")})
                for d in docs]

    async def workers(self) -> list[Json]:
        return jsonable(await list_workers(self.store, datetime.now(UTC),
                                           self.config.worker.dead_after_s))

    async def events(self, after: str | None, *, channels: Sequence[str] | None,
                     names: Sequence[str] | None, job_id: str | None) -> list[Json]:
        job = None if job_id is None else (await self.reads.get(job_id)).id
        found = await EventReads(self.store).after(
            None if after is None else _event_id(after), channels=channels, names=names,
            job_id=job, limit=EVENT_BATCH)
        return [event_view(e) for e in found]

    async def maintenance(self) -> Json:
        state = await self.queue.maintenance()
        return {"global": state.global_pause, "names": sorted(state.paused_names)}

    async def set_maintenance(self, on: bool, name: str | None) -> Json:
        if name:
            await (self.queue.pause_name(name) if on else self.queue.resume_name(name))
        else:
            await self.queue.set_maintenance(on)
        return await self.maintenance()

    # Users and roles ------------------------------------------------------------
    async def records(self, kind: str) -> list[Json]:
        out: list[Json] = []
        skip = 0
        while True:
            docs, total = await self.accounts.page(name=None, role=None, skip=skip,
                                                   limit=RECORD_PAGE)
            out += [jsonable(public(d)) for d in docs if d.get("kind") == kind]
            skip += len(docs)
            if not docs or skip >= total:
                return out

    async def record(self, kind: str, name: str) -> Json:
        doc = await self.accounts.by_name(name, kind)
        if doc is None:
            raise NotFound(f"no {kind} {name!r}")
        return jsonable(public(doc))

    async def create_record(self, fields: Json) -> Json:
        return jsonable(public(await self.accounts.create(fields, self.principal)))

    async def update_record(self, record: Json, fields: Json) -> Json:
        doc = await self.accounts.update(parse_id(record["_id"]), parse_etag(record["etag"]),
                                         fields, self.principal)
        return jsonable(public(doc))

    async def delete_record(self, record: Json) -> None:
        await self.accounts.delete(parse_id(record["_id"]), parse_etag(record["etag"]),
                                   self.principal)
