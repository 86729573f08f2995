"""The Schedules API: create, change, enable, disable, remove and read cron
schedules, every input checked, and the job types' class-level schedules synced
into sys.schedule (source ``type``).

A schedule's cron expression, time zone and job type are checked when it is
created or changed: an invalid expression, an unknown zone or an unknown job type
(or arguments it refuses) is a `ValidationError` naming the field. Creating,
changing the timing of, or enabling a schedule sets its next tick after now:
time spent disabled is not caught up. A type schedule takes its cron from the job
type (change it there); it may be disabled or tuned, not removed.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from monq.core.errors import Conflict, NotFound, StaleEtag, ValidationError
from monq.core.ids import maybe_object_id
from monq.core.store import Store
from monq.core.store.schedules import ScheduleStore
from monq.queue.job import Job, load_job_type
from monq.schedule import cron

log = logging.getLogger("monq.scheduler")

_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}\Z")
DEFAULT_CATCHUP = "latest"
DEFAULT_OVERLAP = "skip"
FIELDS = ("name", "job", "args", "cron", "timezone", "jitter_s", "enabled", "catchup",
          "overlap")
TYPE_FIXED = ("name", "job", "cron")  # a type schedule's, from its job type
TIMING = ("cron", "timezone", "jitter_s", "enabled")


@dataclass(frozen=True)
class ScheduleRecord:
    """A schedule as everything above the store sees it."""

    id: ObjectId
    name: str
    job: str
    args: dict[str, Any]
    cron: str
    timezone: str
    jitter_s: float
    enabled: bool
    catchup: str
    overlap: str
    source: str
    etag: ObjectId
    next_tick: datetime | None
    next_at: datetime | None
    last_tick: datetime | None
    last_job_id: ObjectId | None
    pending: int
    created: datetime | None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ScheduleRecord:
        return cls(id=doc["_id"], name=doc["name"], job=doc["job"], args=doc.get("args") or {},
                   cron=doc["cron"], timezone=doc.get("timezone", "UTC"),
                   jitter_s=float(doc.get("jitter_s", 0.0)), enabled=bool(doc.get("enabled")),
                   catchup=doc.get("catchup", DEFAULT_CATCHUP),
                   overlap=doc.get("overlap", DEFAULT_OVERLAP),
                   source=doc.get("source", "api"), etag=doc["etag"],
                   next_tick=doc.get("next_tick"), next_at=doc.get("next_at"),
                   last_tick=doc.get("last_tick"), last_job_id=doc.get("last_job_id"),
                   pending=len(doc.get("pending") or []), created=doc.get("created"))

    def to_public(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.astimezone(UTC).isoformat() if value else None

        return {"_id": str(self.id), "name": self.name, "job": self.job, "args": self.args,
                "cron": self.cron, "timezone": self.timezone, "jitter_s": self.jitter_s,
                "enabled": self.enabled, "catchup": self.catchup, "overlap": self.overlap,
                "source": self.source, "etag": str(self.etag),
                "next_tick": iso(self.next_tick), "next_at": iso(self.next_at),
                "last_tick": iso(self.last_tick),
                "last_job_id": str(self.last_job_id) if self.last_job_id else None,
                "pending": self.pending, "created": iso(self.created)}


def next_fields(schedule_id: ObjectId, expression: str, zone: str, jitter_s: float,
                now: datetime) -> dict[str, Any]:
    """``next_tick`` and ``next_at`` for a schedule (re)starting at `now`."""
    tick = cron.next_tick(expression, cron.check_zone(zone), now)
    return {"next_tick": tick,
            "next_at": tick + timedelta(seconds=cron.jitter_s(str(schedule_id), tick, jitter_s))}


def _job_type(name: Any) -> type[Job]:
    if not isinstance(name, str) or not name:
        raise ValidationError("job: expected a job type's qualified name", field="job")
    try:
        return load_job_type(name)
    except (NotFound, ValidationError) as exc:
        raise ValidationError(f"job: {exc.message}", field="job") from None
    except Exception as exc:  # InvalidJobType and import errors alike
        raise ValidationError(f"job: {exc}", field="job") from None


def check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The checked, normalised definition fields present in `spec`."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key not in FIELDS:
            raise ValidationError(f"{key}: unknown field {key!r}", field=key)
        out[key] = _check_field(key, value)
    if "job" in out:
        job_type = _job_type(out["job"])
        out["job"] = job_type.qualname()
        if "args" in out:
            try:
                out["args"] = job_type.validate_args(out["args"])
            except ValidationError as exc:
                raise ValidationError(f"args: {exc.message}", field="args") from None
    return out


def _check_name(value: Any) -> Any:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValidationError("name: 1 to 128 letters, digits or _ . : @ -", field="name")
    return value


def _check_job(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise ValidationError("job: expected a job type's qualified name", field="job")
    return value


def _check_args(value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("args: expected an object", field="args")
    return value


def _check_jitter(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 <= value <= cron.MAX_JITTER_S):
        raise ValidationError(f"jitter_s: expected seconds from 0 to "
                              f"{cron.MAX_JITTER_S:.0f}", field="jitter_s")
    return float(value)


def _check_enabled(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValidationError("enabled: expected true or false", field="enabled")
    return value


def _one_of(key: str, choices: Sequence[str]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValidationError(f"{key}: one of {', '.join(choices)}", field=key)
        return value
    return check


# One check per field: each returns the value to store or raises naming its field.
_FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": _check_name, "job": _check_job, "args": _check_args,
    "cron": cron.check_cron, "timezone": lambda value: str(cron.check_zone(value).key),
    "jitter_s": _check_jitter, "enabled": _check_enabled,
    "catchup": _one_of("catchup", cron.CATCHUP_POLICIES),
    "overlap": _one_of("overlap", cron.OVERLAP_POLICIES),
}


def _check_field(key: str, value: Any) -> Any:
    check = _FIELD_CHECKS.get(key)
    return value if check is None else check(value)


def scheduled_types(modules: Sequence[str]) -> list[type[Job]]:
    """The job types defined in `modules` that declare a ``schedule``."""
    found: list[type[Job]] = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, Job) and value is not Job and \
                    value.__module__ == module.__name__ and value.schedule:
                found.append(value)
    return found


class Schedules:
    """Operations on schedules; `author` is who acts."""

    def __init__(self, store: Store, *, author: str | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.schedules = ScheduleStore(store)
        self.author = author
        self.clock = clock or (lambda: datetime.now(UTC))

    def _now(self) -> datetime:
        """Now, to the millisecond that MongoDB keeps."""
        now = self.clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    async def all(self) -> list[ScheduleRecord]:
        return [ScheduleRecord.from_document(d) for d in await self.schedules.all()]

    async def get(self, key: str | ObjectId,
                  visible: Callable[[str], bool] | None = None) -> ScheduleRecord:
        """A schedule by id or by name, among those whose job `visible` accepts (all
        when None). Names are unique per job: a name several visible schedules share
        is a `Conflict` asking for the id."""
        docs: list[dict[str, Any]] = []
        schedule_id = maybe_object_id(key)
        if schedule_id is not None:
            doc = await self.schedules.get(schedule_id)
            docs = [doc] if doc is not None else []
        if not docs and isinstance(key, str):
            docs = await self.schedules.named(key)
        docs = [d for d in docs if visible is None or visible(d["job"])]
        if not docs:
            raise NotFound(f"no schedule {key}")
        if len(docs) > 1:
            raise Conflict(f"schedules of {len(docs)} jobs are named {key!r}: give the id "
                           f"of one ({', '.join(str(d['_id']) for d in docs)})")
        return ScheduleRecord.from_document(docs[0])

    async def create(self, spec: Mapping[str, Any]) -> ScheduleRecord:
        for key in ("name", "job", "cron"):
            if key not in spec:
                raise ValidationError(f"{key}: required", field=key)
        values = check_spec({"args": {}, **spec})
        now = self._now()
        schedule_id = ObjectId()
        values.setdefault("timezone", "UTC")
        values.setdefault("jitter_s", 0.0)
        doc = {"_id": schedule_id, **values, "enabled": values.get("enabled", True),
               "catchup": values.get("catchup", DEFAULT_CATCHUP),
               "overlap": values.get("overlap", DEFAULT_OVERLAP), "source": "api",
               "etag": ObjectId(), "created": now, "updated": now, "created_by": self.author,
               "last_tick": None, "last_job_id": None, "pending": [],
               **next_fields(schedule_id, values["cron"], values["timezone"],
                             values["jitter_s"], now)}
        try:
            await self.schedules.insert(doc)
        except Conflict:
            raise Conflict(f"a schedule named {values['name']!r} exists already for "
                           f"{values['job']}") from None
        return ScheduleRecord.from_document(doc)

    async def update(self, key: str | ObjectId, etag: ObjectId | None,
                     changes: Mapping[str, Any]) -> ScheduleRecord:
        """Change a schedule if it still has `etag` (None: whatever it has now)."""
        current = await self.get(key)
        if current.source == "type":
            fixed = [k for k in TYPE_FIXED if k in changes and changes[k] != getattr(
                current, k)]
            if fixed:
                raise ValidationError(f"{fixed[0]}: schedule {current.name!r} comes from its "
                                      f"job type; change the job type's schedule",
                                      field=fixed[0])
        values = check_spec(changes)
        if ("job" in values) != ("args" in values):  # the arguments must suit the job
            values.update(check_spec({"job": values.get("job", current.job),
                                      "args": values.get("args", current.args)}))
        now = self._now()
        fields: dict[str, Any] = {**values, "updated": now}
        timing = {k: values.get(k, getattr(current, k)) for k in TIMING}
        if any(k in values and values[k] != getattr(current, k) for k in TIMING):
            fields.update(next_fields(current.id, timing["cron"], timing["timezone"],
                                      timing["jitter_s"], now))
        doc = await self.schedules.update(current.id, etag, fields)
        if doc is None:
            if etag is not None and await self.schedules.get(current.id) is not None:
                raise StaleEtag()
            raise NotFound(f"no schedule {key}")
        return ScheduleRecord.from_document(doc)

    async def enable(self, key: str | ObjectId, enabled: bool = True) -> ScheduleRecord:
        return await self.update(key, None, {"enabled": enabled})

    async def remove(self, key: str | ObjectId, etag: ObjectId | None) -> ScheduleRecord:
        current = await self.get(key)
        if current.source == "type":
            raise Conflict(f"schedule {current.name!r} comes from its job type: disable it "
                           f"instead (it would come back)")
        if not await self.schedules.delete(current.id, etag or current.etag):
            raise StaleEtag()
        return current

    async def sync_types(self, modules: Sequence[str]) -> list[str]:
        """Create or follow the schedules of the job types in `modules`; their names."""
        now = self._now()
        names = []
        for job_type in scheduled_types(modules):
            name = job_type.qualname()
            try:
                expression = cron.check_cron(job_type.schedule or "")
            except ValidationError as exc:
                log.error("job type %s: its schedule is refused: %s", name, exc.message,
                          extra={"action": "type_schedule_refused", "job": name})
                continue
            current = await self.schedules.by_name(name, name)
            if current is None:
                schedule_id = ObjectId()
                with contextlib.suppress(Conflict):  # another scheduler made it just now
                    await self.schedules.insert({
                        "_id": schedule_id, "name": name, "job": name, "args": {},
                        "cron": expression, "timezone": "UTC", "jitter_s": 0.0,
                        "enabled": True, "catchup": DEFAULT_CATCHUP,
                        "overlap": DEFAULT_OVERLAP, "source": "type", "etag": ObjectId(),
                        "created": now, "updated": now, "created_by": None,
                        "last_tick": None, "last_job_id": None, "pending": [],
                        **next_fields(schedule_id, expression, "UTC", 0.0, now)})
            elif current.get("source") == "type" and current["cron"] != expression:
                # the class changed: follow it (a concurrent change wins; next start retries)
                await self.schedules.update(current["_id"], current["etag"], {
                    "cron": expression, "updated": now,
                    **next_fields(current["_id"], expression, current.get("timezone", "UTC"),
                                  float(current.get("jitter_s", 0.0)), now)})
            names.append(name)
        return names
