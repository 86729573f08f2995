"""What a user may see of an event (DESIGN.md section 7), for the event websocket and
GET /event/history alike.

A user who may not read a job still learns that it exists, never what it is: its
queue events reach them with the job's name replaced by ``UnauthorizedJob`` and
only the fields below (no args, log lines, progress messages, errors or reasons);
``summary`` events have their per-name rows masked the same way. Masking returns
a new document and never changes the one other users receive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bson import ObjectId

from monq.history.summary import mask_rows
from monq.queue.job import UNAUTHORIZED_NAME

QUEUE_CHANNEL = "queue"
SUMMARY_EVENT = "summary"
# What an event about an unreadable job keeps of its data.
MASKED_DATA_FIELDS = ("_id", "number", "state", "progress", "priority", "attempts_left")


def job_channel(job_id: ObjectId | str) -> str:
    return f"job:{job_id}"


def event_job(event: dict[str, Any]) -> tuple[ObjectId | None, str | None]:
    """The id and name of the job a queue event is about (None for others)."""
    if event.get("channel") != QUEUE_CHANNEL or event.get("name") == SUMMARY_EVENT:
        return None, None
    data = event.get("data") or {}
    return data.get("_id"), data.get("name")


def is_masked(event: dict[str, Any], may_read: Callable[[str], bool]) -> bool:
    """Whether the event about a job must be masked for this reader."""
    _, name = event_job(event)
    return name is not None and not may_read(name)


def visible(event: dict[str, Any], may_read: Callable[[str], bool]) -> dict[str, Any]:
    """The event as a reader with `may_read` (job name -> bool) may see it."""
    if event.get("channel") != QUEUE_CHANNEL:
        return event
    data = event.get("data") or {}
    if event.get("name") == SUMMARY_EVENT:
        return {**event, "data": {**data, "jobs": mask_rows(data.get("jobs") or [], may_read)}}
    if not is_masked(event, may_read):
        return event
    masked = {key: data[key] for key in MASKED_DATA_FIELDS if key in data}
    return {**event, "data": {**masked, "name": UNAUTHORIZED_NAME}}
