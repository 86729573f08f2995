"""The job record: a frozen view of a job document, converted at the store boundary.

The document fields are listed in `monq.core.store.layout`; `JobRecord` is what
everything above the store passes around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId

from monq.queue.states import FINAL, State


@dataclass(frozen=True)
class Lock:
    worker: str
    host: str
    pid: int
    at: datetime
    heartbeat: datetime
    token: str
    expires: datetime | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any] | None) -> Lock | None:
        if not doc:
            return None
        return cls(worker=doc["worker"], host=doc.get("host", ""), pid=doc.get("pid", 0),
                   at=doc["at"], heartbeat=doc["heartbeat"], token=doc["token"],
                   expires=doc.get("expires"))


@dataclass(frozen=True)
class JobRecord:
    id: ObjectId
    number: int
    name: str
    args: dict[str, Any]
    state: State
    priority: int
    attempts: int
    attempts_left: int
    enqueued: dict[str, Any]
    query_at: datetime | None
    locked: Lock | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    held: bool = False
    killed_at: datetime | None = None
    removed_at: datetime | None = None
    zombie_at: datetime | None = None
    wall_at: datetime | None = None
    last_error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    runtime: float | None = None
    pool: str = "default"
    tags: tuple[str, ...] = ()
    max_parallel: int | None = None
    wait_for: tuple[ObjectId, ...] = ()
    parent_id: ObjectId | None = None
    child_id: ObjectId | None = None
    defer_count: int = 0
    recoveries: int = 0  # times the sweep put it back after its worker was lost
    result: Any = None
    warnings: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    notifications: tuple[Any, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    @property
    def attempt(self) -> int:
        """The number of the current (or last) attempt, from 1."""
        return max(1, self.attempts - self.attempts_left)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> JobRecord:
        return cls(
            id=doc["_id"], number=doc["number"], name=doc["name"], args=doc.get("args") or {},
            state=State(doc["state"]), priority=doc.get("priority", 0),
            attempts=doc.get("attempts", 1), attempts_left=doc.get("attempts_left", 0),
            enqueued=doc.get("enqueued") or {}, query_at=doc.get("query_at"),
            locked=Lock.from_document(doc.get("locked")), progress=doc.get("progress") or {},
            held=bool(doc.get("held")), killed_at=doc.get("killed_at"),
            removed_at=doc.get("removed_at"), zombie_at=doc.get("zombie_at"),
            wall_at=doc.get("wall_at"), last_error=doc.get("last_error"),
            started_at=doc.get("started_at"), finished_at=doc.get("finished_at"),
            runtime=doc.get("runtime"), pool=doc.get("pool", "default"),
            tags=tuple(doc.get("tags") or ()), max_parallel=doc.get("max_parallel"),
            wait_for=tuple(doc.get("wait_for") or ()), parent_id=doc.get("parent_id"),
            child_id=doc.get("child_id"), defer_count=doc.get("defer_count", 0),
            recoveries=doc.get("recoveries", 0), result=doc.get("result"),
            warnings=tuple(doc.get("warnings") or ()),
            options=doc.get("options") or {},
            notifications=tuple(doc.get("notifications") or ()))

    def to_public(self) -> dict[str, Any]:
        """The job as JSON-friendly data for the API and the CLI."""
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        locked = self.locked
        return {
            "_id": str(self.id), "number": self.number, "name": self.name, "args": self.args,
            "state": self.state.value, "priority": self.priority, "attempts": self.attempts,
            "attempts_left": self.attempts_left,
            "enqueued": {k: (iso(v) if isinstance(v, datetime) else
                             str(v) if isinstance(v, ObjectId) else v)
                         for k, v in self.enqueued.items()},
            "query_at": iso(self.query_at),
            "locked": None if locked is None else {
                "worker": locked.worker, "host": locked.host, "pid": locked.pid,
                "at": iso(locked.at), "heartbeat": iso(locked.heartbeat)},
            "progress": self.progress, "held": self.held, "killed_at": iso(self.killed_at),
            "removed_at": iso(self.removed_at), "zombie_at": iso(self.zombie_at),
            "wall_at": iso(self.wall_at), "last_error": self.last_error,
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
            "runtime": self.runtime, "pool": self.pool, "tags": list(self.tags),
            "wait_for": [str(i) for i in self.wait_for],
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "child_id": str(self.child_id) if self.child_id else None,
            "defer_count": self.defer_count, "recoveries": self.recoveries,
            "result": self.result,
            "warnings": list(self.warnings),
        }
