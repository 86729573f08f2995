"""Jobs over HTTP: list, read, enqueue, act on them, their log and events, job types,
workers and maintenance.

Jobs a user may not read (``job://<name>/r``) are invisible: a 404, never a 403,
and never counted in totals. Acting needs ``job://<name>/x``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from monq.api.base import EARLIEST, LATEST, PAGE_DOCS, BaseHandler
from monq.api.bodies import INT_MAX, INT_MIN
from monq.core.auth.permissions import JobTypePolicy, may_execute_job, may_read_job
from monq.core.errors import BadRequest, NotFound, PermissionDenied, ValidationError
from monq.core.jsonio import dumps
from monq.queue.enqueue import EnqueueRequest, Origin
from monq.queue.job import Job, load_job_type
from monq.queue.model import JobRecord
from monq.queue.queue import Queue
from monq.queue.reads import JobFilter, JobReads, log_line
from monq.queue.states import State
from monq.queue.workers import list_workers

SORTS = {"number": "number", "priority": "priority", "enqueued": "enqueued.at"}
ACTIONS = ("kill", "remove", "restart", "hold", "resume")
FOLLOW_POLL_S = 0.5
MAX_DELAY_S = 10 * 366 * 86400  # ten years: later is a mistake, and timedelta's limit is near
MAX_CHAIN = 20
MAX_GLOB = 200  # characters of a name filter
MAX_STARS = 8  # wildcards in one: each may make the server's regular expression backtrack

_SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_DELAY_S}
# The enqueue options a client may set (monq.queue.enqueue.OVERRIDES), closed
ENQUEUE_OPTIONS: dict[str, Any] = {
    "priority": {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX},
    "attempts": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "retry_delay_s": _SECONDS, "retry_backoff": {"type": "number", "minimum": 0,
                                                 "maximum": 100},
    "retry_jitter_s": _SECONDS, "defer_time_s": _SECONDS,
    "defer_max": {"type": ["integer", "null"], "minimum": 0, "maximum": INT_MAX},
    "wall_time_s": {**_SECONDS, "type": ["number", "null"]},
    "kill_on_wall": {"type": "boolean"},
    "zombie_time_s": {**_SECONDS, "type": ["number", "null"]},
    "max_parallel": {"type": ["integer", "null"], "minimum": 1, "maximum": INT_MAX},
    "pool": {"type": "string", "maxLength": 128},
    "tags": {"type": "array", "maxItems": 64, "items": {"type": "string", "maxLength": 128}},
    "unique": {"type": "boolean"},
}
JOB_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "args": {"type": "object"}, **ENQUEUE_OPTIONS,
    "notifications": {"type": "array", "maxItems": 50, "items": {"type": ["object", "string"]}},
}
ENQUEUE_BODY: dict[str, Any] = {
    "type": "object", "required": ["name"], "additionalProperties": False,
    "properties": {
        **JOB_FIELDS, "at": {"type": "string", "format": "date-time", "maxLength": 64},
        "delay_s": _SECONDS, "hold": {"type": "boolean"},
        "chain": {"type": "array", "maxItems": MAX_CHAIN, "items": {
            "type": "object", "required": ["name"], "properties": JOB_FIELDS,
            "additionalProperties": False}}}}


class JobsBase(BaseHandler):
    def queue(self) -> Queue:
        assert self.principal is not None
        return Queue(self.ctx.store, self.ctx.config, author=self.principal.name,
                     origin=Origin(by=self.principal.name, origin="api"), lazy_enqueue=True)

    def reads(self) -> JobReads:
        return JobReads(self.ctx.store)

    async def visible_job(self, job_id: str) -> JobRecord:
        """The job, if this user may see it; otherwise as if it did not exist."""
        assert self.principal is not None
        try:
            job = await self.reads().get(job_id)
        except BadRequest:
            raise NotFound(f"no job {job_id}") from None
        if not may_read_job(self.principal, job.name):
            raise NotFound(f"no job {job_id}")
        return job


class JobsHandler(JobsBase):
    """GET: jobs, paginated and filtered; POST: enqueue one."""

    permission = "monq.api.jobs"
    summary = "list jobs (filtered, paginated) or enqueue one"
    query = {"GET": {"page": int, "per_page": int, "state": str, "name": str, "number": int,
                     "worker": str, "enqueued_after": datetime, "enqueued_before": datetime,
                     "sort": str, "descending": bool, "finished": bool, "after": str}}
    bodies = {"POST": ENQUEUE_BODY}
    query_docs = {
        **PAGE_DOCS,
        "after": "keyset paging: the jobs after this job in the listing's order (the "
                 "reply's ``next_after``, null on the last page); with page 0 only. A "
                 "job that is gone or that one may not read is a 400",
        "finished": "true: finished jobs (sys.journal) instead of the queue",
        "sort": f"one of {', '.join(SORTS)} (ties broken by id)",
    }

    async def get(self) -> None:
        """Replies carry ``total_capped`` (``total_count`` stopped at
        ``api.count_limit``) and ``next_after`` (the keyset of the next page)."""
        assert self.principal is not None
        page, per_page = self.page_args()
        states = tuple(s for s in (self.args.get("state") or "").split(",") if s)
        for state in states:
            if state not in State.__members__.values():
                raise BadRequest(f"parameter 'state': unknown state {state!r}")
        sort = self.args.get("sort", "number")
        if sort not in SORTS:
            raise BadRequest(f"parameter 'sort': one of {', '.join(SORTS)}")
        finished = self.args.get("finished", False)
        names = None
        if not self.principal.is_admin:
            names = tuple(n for n in await self.reads().names(finished=finished)
                          if may_read_job(self.principal, n))
        spec = JobFilter(states=states, name_glob=_glob(self.args.get("name")),
                         number=self.args.get("number"), worker=self.args.get("worker"),
                         enqueued_after=self.args.get("enqueued_after"),
                         enqueued_before=self.args.get("enqueued_before"), names=names)
        after = self.after_arg(page)
        principal = self.principal
        found = await self.reads().listing(
            spec, finished=finished, skip=page * per_page, limit=per_page, sort=SORTS[sort],
            descending=self.args.get("descending", False), after=after,
            count_cap=self.ctx.config.api.count_limit,
            visible=lambda name: may_read_job(principal, name))
        self.reply_page([j.to_public() for j in found.jobs], found.total, page, per_page,
                        capped=found.capped,
                        next_after=None if found.next_after is None else str(found.next_after))

    async def post(self) -> None:
        body = self.body()  # checked against ENQUEUE_BODY: closed, typed, bounded
        # every name is authorised before any is imported
        name = self.job_name(body.pop("name"))
        chain = body.pop("chain", [])
        names = [self.job_name(link["name"], field=f"chain[{i}].name")
                 for i, link in enumerate(chain)]
        self.load(name)
        links = []
        for i, (link, link_name) in enumerate(zip(chain, names, strict=True)):
            self.load(link_name, f"chain[{i}].name")
            options = {k: v for k, v in link.items() if k not in ("name", "args",
                                                                   "notifications")}
            links.append(EnqueueRequest(name=link_name, args=link.get("args"),
                                        options=options,
                                        notifications=link.get("notifications") or ()))
        if "at" in body:
            body["at"] = _parse_at(body["at"])
        job = await self.queue().enqueue(name, body.pop("args", None) or {}, chain=links,
                                         **body)
        # 200, not 201: core4 clients enqueue and assert ``rv.status_code == 200``.
        self.reply(job.to_public())

    def load(self, name: str, field: str = "name") -> type[Job]:
        """The job type of an authorised name; its qualified name (a class may be
        re-exported under another module) must be allowed too."""
        job_type = load_job_type(name)
        if job_type.qualname() != name:
            self.job_name(job_type.qualname(), field=field)
        return job_type


def _glob(value: str | None) -> str | None:
    """A name filter short and simple enough to match cheaply on the server."""
    if value is not None and (len(value) > MAX_GLOB or value.count("*") > MAX_STARS):
        raise ValidationError(f"parameter 'name': at most {MAX_GLOB} characters and "
                              f"{MAX_STARS} '*'", field="name")
    return value


def _parse_at(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("at: not an ISO 8601 time", field="at") from None
    if at.tzinfo is None:
        raise ValidationError("at: give a time zone", field="at")
    if not EARLIEST <= at < LATEST:
        raise ValidationError(f"at: must be between {EARLIEST.year} and {LATEST.year - 1}",
                              field="at")
    return at


class JobHandler(JobsBase):
    permission = "monq.api.jobs"
    summary = "one job, by id or number"

    async def get(self, job_id: str) -> None:
        """The job, with ``actions``: what this user may do to it."""
        assert self.principal is not None
        job = await self.visible_job(job_id)
        allowed = list(ACTIONS) if may_execute_job(self.principal, job.name) else []
        self.reply({**job.to_public(), "actions": allowed})


class JobActionHandler(JobsBase):
    """POST /jobs/{id}/kill|remove|restart|hold|resume (needs job://<name>/x)."""

    permission = "monq.api.jobs.action"
    summary = "kill, remove, restart, hold or resume a job"

    async def post(self, job_id: str, action: str) -> None:
        assert self.principal is not None
        if action not in ACTIONS:
            raise NotFound(f"no action {action!r}")
        job = await self.visible_job(job_id)
        if not may_execute_job(self.principal, job.name):
            raise PermissionDenied(f"permission denied: job://{job.name}/x")
        if action == "restart":  # a restart imports the type again: it must still be allowed
            self.job_name(job.name)
        result = await getattr(self.queue(), action)(job.id)
        self.reply(result.to_public())


class JobLogHandler(JobsBase):
    """A job's log, paginated; ``follow=true`` streams it as Server-Sent Events until
    the job ends."""

    permission = "monq.api.jobs.log"
    summary = "a job's log (paginated, or followed as server-sent events)"
    query = {"GET": {"page": int, "per_page": int, "follow": bool}}

    async def get(self, job_id: str) -> None:
        job = await self.visible_job(job_id)
        if self.args.get("follow"):
            await self.follow(job)
            return
        page, per_page = self.page_args()
        lines, total = await self.reads().log(job.id, skip=page * per_page, limit=per_page)
        self.reply_page([log_line(ln) for ln in lines], total, page, per_page)

    async def follow(self, job: JobRecord) -> None:
        self.set_header("Content-Type", "text/event-stream")
        reads, last = self.reads(), None
        while True:
            lines, _ = await reads.log(job.id, after=last, limit=1000)
            for line in lines:
                last = line["_id"]
                self.write(f"data: {dumps(log_line(line))}\n\n")
            current = await reads.get(job.id)
            if current.finished and not lines:
                self.write(f"event: end\ndata: {dumps({'state': current.state})}\n\n")
                await self.flush()
                break
            await self.flush()
            await asyncio.sleep(FOLLOW_POLL_S)
        self.finish()


class JobEventsHandler(JobsBase):
    permission = "monq.api.jobs"
    summary = "a job's events, oldest first"

    async def get(self, job_id: str) -> None:
        job = await self.visible_job(job_id)
        events = await self.reads().events(job.id)
        self.reply([{"_id": str(e["_id"]), "name": e["name"], "created": e["created"],
                     "author": e["author"], "data": e["data"]} for e in events])


def _known_job_types(names: list[str], policy: JobTypePolicy) -> list[type[Job]]:
    import monq.jobs.example  # noqa: F401 - the shipped examples are always offered

    found: dict[str, type[Job]] = {}
    pending: list[type[Job]] = list(Job.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__ != "__main__" and not cls.__module__.startswith("tests."):
            found[cls.qualname()] = cls
    for name in names:
        if policy.refusal(name) is not None:
            continue  # never import what clients may not name
        try:
            found[name] = load_job_type(name)
        except Exception:  # noqa: S112 - a type no longer importable is not offered
            continue
    return [found[n] for n in sorted(found)]


class JobTypesHandler(JobsBase):
    """Job types with their documentation, defaults and parameter declarations."""

    permission = "monq.api.jobtypes"
    summary = "job types: documentation, defaults and parameters (for enqueue forms)"

    async def get(self) -> None:
        assert self.principal is not None
        names = await self.reads().names(finished=None)
        policy = JobTypePolicy.from_config(self.ctx.config)
        self.reply([t.describe() for t in _known_job_types(names, policy)
                    if may_read_job(self.principal, t.qualname())
                    and policy.refusal(t.qualname()) is None])


class WorkersHandler(BaseHandler):
    """Live and recently dead workers: pools, tags, jobs, heartbeat age."""

    permission = "monq.api.workers"
    summary = "workers, their pools, jobs and heartbeat age"

    async def get(self) -> None:
        self.reply(await list_workers(self.ctx.store, datetime.now(UTC),
                                      self.ctx.config.worker.dead_after_s))


class MaintenanceHandler(BaseHandler):
    """GET the maintenance state; POST turns it on (for one job name with ``name``), DELETE
    turns it off. Workers claim no new jobs while it is on."""

    permission = "monq.api.maintenance"
    summary = "maintenance: pause claiming everywhere or per job name"
    query = {"POST": {"name": str}, "DELETE": {"name": str}}

    def _queue(self) -> Queue:
        return Queue(self.ctx.store, self.ctx.config)

    async def _state(self) -> None:
        state = await self._queue().maintenance()
        self.reply({"global": state.global_pause, "names": sorted(state.paused_names)})

    async def get(self) -> None:
        await self._state()

    async def post(self) -> None:
        name = self.args.get("name")
        await (self._queue().pause_name(name) if name else self._queue().set_maintenance(True))
        await self._state()

    async def delete(self) -> None:
        name = self.args.get("name")
        await (self._queue().resume_name(name) if name else
               self._queue().set_maintenance(False))
        await self._state()
