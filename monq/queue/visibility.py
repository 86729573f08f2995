"""What a user may see of an event (DESIGN.md section 7), for the event websocket and
GET /event/history alike.

An event is *about a job* when it is a queue event (its ``data`` names the job) or
when it is on that job's own channel ``job:<id>`` (the notifier's ``notification``
events, whose ``data`` names the job too). A user who may not read the job still
learns that it exists, never what it is: such events reach them with the job's
name replaced by ``UnauthorizedJob``, without an ``author``, and with only the
fields below (no args, log lines, progress messages, notification texts, errors or
reasons). An event on a job channel that does not name its job is masked for
everyone but admins: nothing unnamed is trusted. ``summary`` events have their
per-name rows masked the same way. Masking returns a new document and never
changes the one other users receive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bson import ObjectId

from monq.core.ids import maybe_object_id
from monq.queue.job import UNAUTHORIZED_NAME

QUEUE_CHANNEL = "queue"
SUMMARY_EVENT = "summary"
JOB_CHANNEL_PREFIX = "job:"
# The flags of a summary row (DESIGN.md section 5) beside its name and state.
FLAGS = ("zombie", "wall", "killed", "removed")
# What an event about an unreadable job keeps of its data.
MASKED_DATA_FIELDS = ("_id", "number", "state", "progress", "priority", "attempts_left")


def job_channel(job_id: ObjectId | str) -> str:
    return f"{JOB_CHANNEL_PREFIX}{job_id}"


def channel_job(channel: Any) -> ObjectId | None:
    """The job id of a ``job:<id>`` channel (None for other channels)."""
    if not isinstance(channel, str) or not channel.startswith(JOB_CHANNEL_PREFIX):
        return None
    return maybe_object_id(channel[len(JOB_CHANNEL_PREFIX):])


def event_job(event: dict[str, Any]) -> tuple[ObjectId | None, str | None]:
    """The id and name of the job an event is about ((None, None) for others; the
    name is None on a job channel event that does not give it)."""
    channel = event.get("channel")
    if channel == QUEUE_CHANNEL:
        if event.get("name") == SUMMARY_EVENT:
            return None, None
        data = event.get("data") or {}
        return data.get("_id"), data.get("name")
    job_id = channel_job(channel)
    if job_id is None:
        return None, None
    name = (event.get("data") or {}).get("name")
    return job_id, name if isinstance(name, str) else None


def is_about_job(event: dict[str, Any]) -> bool:
    channel = event.get("channel")
    if channel == QUEUE_CHANNEL:
        return event.get("name") != SUMMARY_EVENT
    return channel_job(channel) is not None


def is_masked(event: dict[str, Any], may_read: Callable[[str], bool]) -> bool:
    """Whether the event about a job must be masked for this reader."""
    if not is_about_job(event):
        return False
    _, name = event_job(event)
    return name is None or not may_read(name)


def masked(event: dict[str, Any]) -> dict[str, Any]:
    """The event about a job as a reader who may not read that job sees it."""
    data = event.get("data") or {}
    kept = {key: data[key] for key in MASKED_DATA_FIELDS if key in data}
    return {**event, "author": None, "data": {**kept, "name": UNAUTHORIZED_NAME}}


def visible(event: dict[str, Any], may_read: Callable[[str], bool],
            is_admin: bool = False) -> dict[str, Any]:
    """The event as a reader with `may_read` (job name -> bool) may see it; an admin
    sees everything as it is."""
    if is_admin:
        return event
    if event.get("channel") == QUEUE_CHANNEL and event.get("name") == SUMMARY_EVENT:
        data = event.get("data") or {}
        return {**event, "data": {**data, "jobs": mask_rows(data.get("jobs") or [], may_read)}}
    return masked(event) if is_masked(event, may_read) else event


def mask_rows(rows: Iterable[dict[str, Any]], may_read: Callable[[str], bool]
              ) -> list[dict[str, Any]]:
    """Summary rows with names the user may not read replaced by UnauthorizedJob
    (rows that then look alike are merged, their counts added)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        name = row["name"] if may_read(row["name"]) else UNAUTHORIZED_NAME
        key = (name, row["state"], *(row[f] for f in FLAGS))
        if key in merged:
            merged[key]["n"] += row["n"]
        else:
            merged[key] = {**row, "name": name}
    return list(merged.values())
