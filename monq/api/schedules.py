"""Schedules over HTTP: GET/POST /schedules, GET/PUT/DELETE /schedules/{id}.

Any logged-in user may call these; what they see and change follows their job
permissions: a schedule is visible to whoever may read its job
(``job://<name>/r``) and invisible (404) to others; creating, changing and
removing one needs ``job://<name>/x`` on its job (on both jobs when the job
changes). PUT and DELETE need the schedule's current ``etag``.
"""

from __future__ import annotations

from typing import Any

from monq.api.base import BaseHandler
from monq.core.auth.accounts import parse_etag
from monq.core.auth.permissions import may_execute_job, may_read_job
from monq.core.errors import PermissionDenied
from monq.schedule.cron import CATCHUP_POLICIES, MAX_JITTER_S, OVERLAP_POLICIES
from monq.schedule.service import ScheduleRecord, Schedules

DEFINITION = {
    "name": {"type": "string", "pattern": r"^[A-Za-z0-9_.:@-]{1,128}$"},
    "job": {"type": "string", "minLength": 1, "maxLength": 200}, "args": {"type": "object"},
    "cron": {"type": "string", "maxLength": 256}, "timezone": {"type": "string",
                                                               "maxLength": 64},
    "jitter_s": {"type": "number", "minimum": 0, "maximum": MAX_JITTER_S},
    "enabled": {"type": "boolean"},
    "catchup": {"type": "string", "enum": list(CATCHUP_POLICIES)},
    "overlap": {"type": "string", "enum": list(OVERLAP_POLICIES)},
}


class SchedulesBase(BaseHandler):
    def schedules(self) -> Schedules:
        assert self.principal is not None
        return Schedules(self.ctx.store, author=self.principal.name)

    async def visible(self, key: str) -> ScheduleRecord:
        """The schedule, if this user may see it; otherwise as if it did not exist."""
        assert self.principal is not None
        principal = self.principal
        # names are unique per job: only the schedules of readable jobs are looked at
        return await self.schedules().get(key, lambda job: may_read_job(principal, job))

    def may_change(self, job: Any) -> None:
        assert self.principal is not None
        if isinstance(job, str) and not may_execute_job(self.principal, job):
            raise PermissionDenied(f"permission denied: job://{job}/x")


class SchedulesHandler(SchedulesBase):
    summary = "list the schedules of jobs you may read (paginated), or create one"
    query = {"GET": {"page": int, "per_page": int}}
    bodies = {"POST": {"type": "object", "required": ["name", "job", "cron"],
                       "properties": DEFINITION, "additionalProperties": False}}

    async def get(self) -> None:
        assert self.principal is not None
        page, per_page = self.page_args()
        visible = [s for s in await self.schedules().all()
                   if may_read_job(self.principal, s.job)]
        chunk = visible[page * per_page:(page + 1) * per_page]
        self.reply_page([s.to_public() for s in chunk], len(visible), page, per_page)

    async def post(self) -> None:
        body = self.body()
        self.job_name(body["job"], field="job")  # allowed and permitted, before any import
        record = await self.schedules().create(body)
        self.reply(record.to_public(), code=201, message="Created")


class ScheduleHandler(SchedulesBase):
    summary = "one schedule, by id or name: read, change (with etag), delete (with etag)"
    query = {"DELETE": {"etag": str}}
    required = {"DELETE": ("etag",)}
    bodies = {"PUT": {"type": "object", "required": ["etag"],
                      "properties": {"etag": {"type": "string"}, **DEFINITION},
                      "additionalProperties": False}}

    async def get(self, schedule_id: str) -> None:
        self.reply((await self.visible(schedule_id)).to_public())

    async def put(self, schedule_id: str) -> None:
        body = self.body()
        etag = parse_etag(body.pop("etag", None))
        current = await self.visible(schedule_id)
        self.may_change(current.job)
        if "job" in body:
            self.job_name(body["job"], field="job")
        record = await self.schedules().update(current.id, etag, body)
        self.reply(record.to_public())

    async def delete(self, schedule_id: str) -> None:
        etag = parse_etag(self.args.get("etag"))
        current = await self.visible(schedule_id)
        self.may_change(current.job)
        await self.schedules().remove(current.id, etag)
        self.reply(None)
