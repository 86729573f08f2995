"""New jobs: requests, their documents (options checked against the job type,
arguments against its parameter declaration) and `enqueue_many`, which writes a
batch of them with their ``enqueue_job`` events."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from monq.core.errors import ValidationError
from monq.core.store.events import new_event
from monq.core.webhook_policy import WebhookPolicy
from monq.queue.context import HOST, Origin, QueueContext
from monq.queue.job import Job, load_job_type
from monq.queue.model import JobRecord
from monq.queue.notification_rules import check_rules, job_type_rules
from monq.queue.states import FINAL, EventName, State

__all__ = ["HOST", "EnqueueRequest", "Origin", "build_document", "enqueue_many"]

# Enqueue options that override a job type's class defaults, with their types.
OVERRIDES: dict[str, tuple[type, ...]] = {
    "priority": (int,), "attempts": (int,), "retry_delay_s": (int, float),
    "retry_backoff": (int, float), "retry_jitter_s": (int, float),
    "defer_time_s": (int, float), "defer_max": (int, type(None)),
    "wall_time_s": (int, float, type(None)), "kill_on_wall": (bool,),
    "zombie_time_s": (int, float, type(None)), "max_parallel": (int, type(None)),
    "pool": (str,), "tags": (list, tuple), "unique": (bool,),
}
RUNTIME_OPTIONS = ("retry_delay_s", "retry_backoff", "retry_jitter_s", "defer_time_s",
                   "defer_max", "wall_time_s", "kill_on_wall", "zombie_time_s")


@dataclass(frozen=True)
class EnqueueRequest:
    """One job to enqueue: a job type's name, its arguments and options."""

    name: str
    args: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    delay_s: float | None = None
    hold: bool = False
    wait_for: Sequence[ObjectId] = ()
    chain: Sequence[EnqueueRequest] = ()
    notifications: Sequence[Any] = ()
    job_id: ObjectId | None = None


def unique_key(name: str, args: Mapping[str, Any]) -> str:
    canonical = json.dumps([name, args], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_options(job_type: type[Job], options: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in OVERRIDES:
        values[key] = getattr(job_type, key)
    for key, value in options.items():
        kinds = OVERRIDES.get(key)
        if kinds is None:
            raise ValidationError(f"unknown option {key!r}", field=key)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValidationError(f"option {key!r}: expected "
                                  f"{' or '.join(k.__name__ for k in kinds)}, got {value!r}",
                                  field=key)
        values[key] = value
    if values["attempts"] < 1:
        raise ValidationError("option 'attempts': must be at least 1", field="attempts")
    if values["max_parallel"] is not None and values["max_parallel"] < 1:
        raise ValidationError("option 'max_parallel': must be at least 1", field="max_parallel")
    if not all(isinstance(t, str) for t in values["tags"]):
        raise ValidationError("option 'tags': expected a list of strings", field="tags")
    return values


def build_document(request: EnqueueRequest, number: int, origin: Origin, now: datetime,
                   webhooks: WebhookPolicy | None = None) -> dict[str, Any]:
    """The new job's document, with its enqueue_job event in the outbox; `webhooks`
    is where the request's webhook rules may send to."""
    job_type = load_job_type(request.name)
    args = job_type.validate_args(request.args)
    values = _check_options(job_type, request.options)
    job_type_rules(job_type.qualname(), job_type.notifications)
    notifications = check_rules(request.notifications, webhooks=webhooks)
    query_at = request.at or now
    if request.delay_s:
        query_at = now + timedelta(seconds=float(request.delay_s))
    job_id = request.job_id or ObjectId()
    doc: dict[str, Any] = {
        "_id": job_id, "number": number, "name": job_type.qualname(), "args": args,
        "state": str(State.PENDING), "priority": values["priority"],
        "attempts": values["attempts"], "attempts_left": values["attempts"],
        "enqueued": {"at": now, "by": origin.by, "host": origin.host, "origin": origin.origin,
                     "parent_id": origin.parent_id, **dict(origin.detail or {})},
        "query_at": query_at, "locked": None, "progress": {"value": 0.0, "message": None},
        "held": bool(request.hold), "blocked": bool(request.wait_for),
        "pool": values["pool"],
        "tags": sorted(set(values["tags"])), "max_parallel": values["max_parallel"],
        "options": {k: values[k] for k in RUNTIME_OPTIONS}, "defer_count": 0,
        "chain": [chain_spec(c, webhooks) for c in request.chain],
        "notifications": notifications,
        "parent_id": origin.parent_id, "killed_at": None, "removed_at": None,
        "zombie_at": None, "wall_at": None, "last_error": None, "started_at": None,
        "finished_at": None, "runtime": None,
    }
    if request.wait_for:  # absent otherwise: the sparse wait_for index holds only these
        doc["wait_for"] = list(request.wait_for)
    if values["unique"]:
        doc["unique_key"] = unique_key(doc["name"], args)
    doc["outbox"] = [new_event(str(EventName.ENQUEUE_JOB), channel="queue", author=origin.by,
                               now=now, data={"state": str(State.PENDING),
                                              "priority": values["priority"],
                                              "origin": origin.origin})]
    return doc


def chain_spec(request: EnqueueRequest, webhooks: WebhookPolicy | None = None,
               ) -> dict[str, Any]:
    """A job to enqueue when this one completes, checked now, with its id fixed now
    so that enqueueing it after a crash cannot make it twice."""
    job_type = load_job_type(request.name)
    job_type.validate_args(request.args)
    _check_options(job_type, request.options)
    spec = {"_id": request.job_id or ObjectId(), "name": job_type.qualname(),
            "args": dict(request.args or {}), "options": dict(request.options)}
    if request.notifications:
        spec["notifications"] = check_rules(request.notifications, webhooks=webhooks)
    return spec


async def enqueue_many(ctx: QueueContext, requests: Sequence[EnqueueRequest]
                       ) -> list[JobRecord]:
    """Enqueue several jobs: one insert of the jobs (each with its enqueue_job event in
    its outbox) and one of the events (lazily: shared with the process's other
    enqueues under way), and with an eager context one update that
    clears the outboxes (a lazy one leaves them to the job's next writer: the events
    are in sys.event already, so whoever relays them again doubles nothing). All are
    checked before any is written."""
    if not requests:
        return []
    now = ctx.clock()
    requests = [dataclasses.replace(r, wait_for=await _open_dependencies(ctx, r.wait_for))
                for r in requests]
    first = await ctx.counters.reserve_numbers(len(requests))
    webhooks = WebhookPolicy.from_config(ctx.config.notifier)
    docs = [build_document(r, first + i, ctx.origin, now, webhooks)
            for i, r in enumerate(requests)]
    waited_for = {dep for r in requests for dep in r.wait_for}
    if waited_for:  # before the insert: a dependency completing now must see it
        await ctx.jobs.mark_has_dependents(sorted(waited_for))
    await ctx.jobs.insert(docs)
    if ctx.enqueue_lazily:  # the claim, or the sweep, drops them
        # with the events of the process's other enqueues under way (an API server's
        # requests): one insert for all
        await ctx.jobs.events.insert_together(
            [e for d in docs for e in ctx.jobs.outbox_events(d)])
    else:
        await ctx.jobs.relay_many(docs)
    return [JobRecord.from_document(d) for d in docs]


async def _open_dependencies(ctx: QueueContext, wait_for: Sequence[ObjectId]
                             ) -> list[ObjectId]:
    """The dependencies not complete yet; refused if one is unknown or ended badly."""
    if not wait_for:
        return []
    states = await ctx.jobs.states_of(list(wait_for))
    for job_id in wait_for:
        state = states.get(job_id)
        if state is None:
            raise ValidationError(f"wait_for: no job {job_id}", field="wait_for")
        if state in FINAL and state != State.COMPLETE:
            raise ValidationError(f"wait_for: job {job_id} ended {state}", field="wait_for")
    return [j for j in wait_for if states[j] != State.COMPLETE]
