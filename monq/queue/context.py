"""What every queue operation shares: who acts, the clock, the stores, and `write`,
the one way a state changes.

`write` takes an `Action` and reads everything else from `TRANSITIONS`: the states the
job may leave, the fields it requires besides, the state it lands in and whether the
writer must hold the lease. The store then makes it one conditional write that
carries the event in the job's outbox.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from monq.core.config import Config
from monq.core.store import Store
from monq.core.store.counters import CounterStore
from monq.core.store.events import new_event
from monq.core.store.jobs import JobStore
from monq.core.store.logs import LogStore
from monq.queue.states import TRANSITIONS, Action, State

HOST = socket.gethostname()


@dataclass(frozen=True)
class Origin:
    """Who enqueues: the user, the host, and how (api, cli, scheduler, job)."""

    by: str | None = None
    host: str = HOST
    origin: str = "api"
    parent_id: ObjectId | None = None
    detail: Mapping[str, Any] | None = None  # more about the origin, e.g. the schedule


def utc_now() -> datetime:
    return datetime.now(UTC)


def seconds_between(start: datetime, end: datetime) -> float:
    """Seconds from `start` to `end`, never negative (clocks of two hosts may differ)."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return max(0.0, round((end - start).total_seconds(), 6))


@dataclass
class QueueContext:
    """Who acts (a user name or a worker id) and how jobs are reached. Not frozen:
    tests put a `JobStore` stand-in in `jobs` to interleave another actor's call."""

    store: Store
    config: Config
    author: str | None = None
    origin: Origin = field(default_factory=Origin)
    clock: Callable[[], datetime] = utc_now
    jobs: JobStore = field(init=False)
    counters: CounterStore = field(init=False)
    logs: LogStore = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = JobStore(self.store)
        self.counters = CounterStore(self.store)
        self.logs = LogStore(self.store)

    def acting_for(self, author: str | None, origin: Origin) -> QueueContext:
        """The same stores and clock, for another author and origin (a chain's jobs
        are enqueued by the first job's author)."""
        other = QueueContext(self.store, self.config, author, origin, self.clock)
        other.jobs, other.counters, other.logs = self.jobs, self.counters, self.logs
        return other

    def event(self, action: Action, now: datetime, *, current: State | str | None = None,
              author: str | None = None, **data: Any) -> dict[str, Any]:
        """The event `action` writes, naming the state the job is in after it."""
        transition = TRANSITIONS[action]
        return new_event(str(transition.event), channel="queue", author=author or self.author,
                         now=now, data={"state": str(transition.event_state(current)), **data})

    async def write(self, action: Action, job_id: ObjectId, event: dict[str, Any], *,
                    token: str | None = None, set_fields: dict[str, Any] | None = None,
                    inc: dict[str, int] | None = None) -> dict[str, Any] | None:
        """Apply `action` to the job in one conditional write; the job after it, or
        None when the job is not in a state (or lease) the action may leave."""
        transition = TRANSITIONS[action]
        if transition.leased and token is None:
            raise ValueError(f"{action}: a worker's write needs the lease token")
        fields = dict(set_fields or {})
        if transition.target is not None:
            fields["state"] = str(transition.target)
        return await self.jobs.transition(
            job_id, sources=sorted(str(s) for s in transition.sources), event=event,
            token=token, set_fields=fields, inc=inc, requires=transition.requires)
