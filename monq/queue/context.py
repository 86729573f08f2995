"""What every queue operation shares: who acts, the clock, the stores, and `write`,
the one way a state changes.

`write` takes an `Action` and reads everything else from `TRANSITIONS`: the states the
job may leave, the fields it requires besides, the state it lands in and whether the
writer must hold the lease. The store then makes it one conditional write that
carries the event in the job's outbox; `relay` copies the outbox into sys.event.

Clearing the outbox. By default `relay` pulls what it copied at once (one more
write), so a job's outbox is empty between operations. A worker instead clears it
lazily (``lazy_outbox``): it remembers which events of its jobs it relayed, and its
next write to the job drops them in the same update that appends the new event; a
job that leaves the worker (requeued) is cleared at once, and a finished job's
outbox goes with its document (the journal copy has none). An event is dropped only
once it is in sys.event, so a crash at any point leaves it either there or in the
outbox, where the sweep finds it.

Relays are idempotent by event id (sys.event keeps the first copy), so an enqueuer
need not clear what it relayed either (``lazy_enqueue``): the job's next writer
relays it again and drops it, or the sweep does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from monq.core.config import Config
from monq.core.errors import Error
from monq.core.store import Store
from monq.core.store.counters import CounterStore
from monq.core.store.events import new_event
from monq.core.store.jobs import JobStore
from monq.core.store.logs import LogStore
from monq.core.times import as_utc
from monq.queue.states import FINAL, TRANSITIONS, Action, State

log = logging.getLogger("monq.queue")

HOST = socket.gethostname()
RELAY_DELAY_S = 0.05  # lazy_outbox: how long events wait to be relayed with others
RELAY_RETRY_S = 1.0


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
    return max(0.0, round((end - as_utc(start)).total_seconds(), 6))


@dataclass
class QueueContext:
    """Who acts (a user name or a worker id) and how jobs are reached. Not frozen:
    tests put a `JobStore` stand-in in `jobs` to interleave another actor's call."""

    store: Store
    config: Config
    author: str | None = None
    origin: Origin = field(default_factory=Origin)
    clock: Callable[[], datetime] = utc_now
    lazy_outbox: bool = False
    relay_delay_s: float = RELAY_DELAY_S
    # enqueue relays the enqueue_job events and leaves them in the new jobs' outboxes
    # for the next write (the claim) to drop; None: as `lazy_outbox`
    lazy_enqueue: bool | None = None
    jobs: JobStore = field(init=False)
    counters: CounterStore = field(init=False)
    logs: LogStore = field(init=False)
    # lazy_outbox: the ids of relayed events still in each job's outbox, the events
    # waiting to be relayed (by event id: the job's id and the event), and the task
    # that relays them
    relayed: dict[ObjectId, list[ObjectId]] = field(init=False, default_factory=dict)
    _pending: dict[ObjectId, tuple[ObjectId, dict[str, Any]]] = field(
        init=False, default_factory=dict)
    # the one task that writes both, `relay_delay_s` after the first of them
    _flusher: asyncio.Task[None] | None = field(init=False, default=None)
    # lazy_outbox: finished jobs waiting to move to the journal together
    _moves: dict[ObjectId, dict[str, Any]] = field(init=False, default_factory=dict)
    # one `flush_moves` at a time: a caller's (a worker stopping) waits for the one
    # under way, and finds what it took written when it returns
    _flushing: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    # lazy_outbox: whether this process will write the job again (it holds its
    # lease), so that what a relay copied is worth noting for that write (`flush`);
    # set by the worker's actions
    keeps: Callable[[ObjectId], bool] = field(init=False, default=lambda _job_id: True)

    def __post_init__(self) -> None:
        self.jobs = JobStore(self.store)
        self.counters = CounterStore(self.store)
        self.logs = LogStore(self.store)

    def acting_for(self, author: str | None, origin: Origin) -> QueueContext:
        """The same stores and clock, for another author and origin (a chain's jobs
        are enqueued by the first job's author)."""
        other = QueueContext(self.store, self.config, author, origin, self.clock,
                             self.lazy_outbox, self.relay_delay_s, self.lazy_enqueue)
        other.jobs, other.counters, other.logs = self.jobs, self.counters, self.logs
        return other

    @property
    def enqueue_lazily(self) -> bool:
        return self.lazy_outbox if self.lazy_enqueue is None else self.lazy_enqueue

    def event(self, action: Action, now: datetime, *, current: State | str | None = None,
              author: str | None = None, **data: Any) -> dict[str, Any]:
        """The event `action` writes, naming the state the job is in after it."""
        transition = TRANSITIONS[action]
        return new_event(str(transition.event), channel="queue", author=author or self.author,
                         now=now, data={"state": str(transition.event_state(current)), **data})

    async def write(self, action: Action, job_id: ObjectId, event: dict[str, Any], *,
                    token: str | None = None, set_fields: dict[str, Any] | None = None,
                    inc: dict[str, int] | None = None,
                    more_events: Sequence[dict[str, Any]] = ()) -> dict[str, Any] | None:
        """Apply `action` to the job in one conditional write (with `more_events`, the
        events of changes folded into it); the job after it, or None when the job is
        not in a state (or lease) the action may leave."""
        transition = TRANSITIONS[action]
        if transition.leased and token is None:
            raise ValueError(f"{action}: a worker's write needs the lease token")
        fields = dict(set_fields or {})
        if transition.target is not None:
            fields["state"] = str(transition.target)
        drop = self.relayed.pop(job_id, [])
        try:
            doc = await self.jobs.transition(
                job_id, sources=sorted(str(s) for s in transition.sources), event=event,
                token=token, set_fields=fields, inc=inc, requires=transition.requires,
                more_events=more_events, drop=drop)
        except BaseException:
            self.relayed.setdefault(job_id, []).extend(drop)  # dropped or not: unknown
            raise
        if doc is None and drop:
            self.relayed[job_id] = drop
        return doc

    async def relay(self, doc: dict[str, Any], *, leaving: bool = False) -> None:
        """Copy the job's outbox into sys.event and clear it. By default at once;
        with ``lazy_outbox`` the events wait up to `RELAY_DELAY_S` for those of other
        writes (of this job or others) to go out in one insert, and the next write
        clears them, unless the job is `leaving` this process (requeued)."""
        if not self.lazy_outbox:
            self.relayed.pop(doc["_id"], None)
            await self.jobs.relay(doc)
            return
        self._hold(doc)
        if leaving:
            await self.flush()
            self.relayed.pop(doc["_id"], None)
            if doc.get("outbox"):
                await self.jobs.pull(doc["_id"], [e["_id"] for e in doc["outbox"]])
            return
        self.write_soon()

    async def relay_final(self, doc: dict[str, Any]) -> None:
        """Copy the outbox of a job about to move to the journal into sys.event (with
        what else waits to be relayed); its document goes, so nothing is cleared.
        With ``lazy_outbox`` the events of a job that nobody else waits for (no
        chain, no dependents, no parallel slot) go out with its move to the journal,
        in the insert that precedes the move of the batch (`flush_moves`); others'
        at once, so that what its end sets off comes after its final event."""
        if not self.lazy_outbox:
            await self.jobs.relay(doc, pull=False)
            return
        self._hold(doc)
        if doc.get("chain") or doc.get("has_dependents") or doc.get("max_parallel"):
            await self.flush()

    def _hold(self, doc: dict[str, Any]) -> None:
        done = set(self.relayed.get(doc["_id"], ()))
        for event in self.jobs.outbox_events(doc):
            if event["_id"] not in done:
                self._pending[event["_id"]] = (doc["_id"], event)

    def write_soon(self) -> None:
        """Relay what waits and move what finished `relay_delay_s` from now, in one
        go (one insert, then one journal write and one delete), unless that is on
        its way already."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._soon(
                self.flush_moves, lambda: len(self._pending) + len(self._moves),
                "relaying events and moving finished jobs to the journal"))

    async def _soon(self, flush: Callable[[], Awaitable[None]], waiting: Callable[[], int],
                    what: str) -> None:
        """Run `flush` after `relay_delay_s` while anything is `waiting`; on failure
        again after `RELAY_RETRY_S` (the outboxes, and the sweep, keep what waits)."""
        delay_s = self.relay_delay_s
        while waiting():
            await asyncio.sleep(delay_s)
            try:
                await flush()
            except Error as exc:
                log.warning("%s (%d) failed: %s; again in %.0fs", what, waiting(), exc,
                            RELAY_RETRY_S, extra={"action": "write_deferred"})
                delay_s = RELAY_RETRY_S

    async def flush(self) -> None:
        """Relay every event waiting to be relayed, of every job, in one insert."""
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            await self.jobs.events.insert([event for _, event in batch.values()])
        except BaseException:
            self._pending = {**batch, **self._pending}
            raise
        for event_id, (job_id, _) in batch.items():
            # noted only for a job this process writes again: one that ended (or
            # left) while the insert was under way has no next write here, and a
            # note for it would stay as long as the process
            if self.keeps(job_id):
                self.relayed.setdefault(job_id, []).append(event_id)

    async def move_to_journal(self, doc: dict[str, Any]) -> None:
        """Move a finished job (its events relayed) to the journal: at once, or (with
        ``lazy_outbox``) within `RELAY_DELAY_S`, with the other jobs this process
        finished meanwhile, in one bulk write and one delete. Until then it is final
        in sys.queue; after a crash the sweep moves it."""
        self.relayed.pop(doc["_id"], None)
        if not self.lazy_outbox:
            await self.jobs.move_to_journal(doc, [str(s) for s in FINAL])
            return
        self._moves[doc["_id"]] = doc
        self.write_soon()

    async def flush_moves(self) -> None:
        """Relay every event waiting, then move every finished job waiting for it
        to the journal."""
        async with self._flushing:
            await self._flush_moves()

    async def _flush_moves(self) -> None:
        if not self._moves:
            await self.flush()
            return
        # every job of the batch had its events held before it joined the batch
        batch, self._moves = self._moves, {}
        try:
            await self.flush()
            await self.jobs.move_many_to_journal(list(batch.values()),
                                                 [str(s) for s in FINAL])
        except BaseException:
            self._moves = {**batch, **self._moves}
            raise
