"""The summarizer: once a second, the queue's state into sys.history when it changed.

Exactly one is active across the cluster: it holds the lease ``lease:summarizer``
in sys.worker, renewed every tick; another instance takes over when the lease
expires (``summarizer.lease_s``). A history write is made only right after a
successful renewal, and history is unique per (resolution, second), so two
writers never write the same second.

The tick's cost does not grow with the queue: the counts live in memory
(`QueueModel`), updated from the queue events since the last tick, and are
reconciled with a full read of sys.queue only at takeover and every
``RECONCILE_S``. The events come from an `EventReader`, the one way every reader
follows sys.event: it takes events relayed late (within ``queue.relay_bound_s``)
and never returns one twice, so no event is applied twice (a start applied again
after the job finished showed it running again).

Every minute it rolls the seconds into per-minute documents and the minutes
into per-hour ones (the maximum of each count), deletes what is older than
the retention of each resolution, and makes one bounded retention pass over
sys.journal, sys.event and sys.log (`monq.history.retention`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from monq.core.config import Config
from monq.core.errors import Error
from monq.core.loops import periodic
from monq.core.services import wait_for_database
from monq.core.store import Store
from monq.core.store.events import EventReader, EventStore, new_event
from monq.core.store.history import HistoryStore
from monq.history.retention import apply_retention
from monq.history.summary import QueueModel, Summary, history_document, rollup, summary_of

log = logging.getLogger("monq.summarizer")

LEASE = "summarizer"
RECONCILE_S = 30.0
# what the model needs of an event
EVENT_FIELDS = {"name": 1, "data._id": 1, "data.name": 1, "data.state": 1}
ROLLUP_EVERY_S = 60.0


def second(now: datetime) -> datetime:
    return now.replace(microsecond=0)


class Summarizer:
    name = "summarizer"

    def __init__(self, store: Store, config: Config, *,
                 clock: Callable[[], datetime] | None = None,
                 holder: str | None = None) -> None:
        self.store = store
        self.config = config
        self.history = HistoryStore(store)
        self.events = EventStore(store)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.model = QueueModel()
        self.active = False
        self.last: Summary | None = None
        self.reader = EventReader(self.events, config.relay_bound_s, channel="queue",
                                  exclude_names=("summary",), projection=EVENT_FIELDS,
                                  batch=5000)
        self.reconciled_at = 0.0
        self.rolled_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        if not await wait_for_database(self.store, stop, "summarizer"):
            return
        try:
            await periodic("the summarizer", self._tick_on_the_second, stop,
                           interval_s=self.config.summarizer.interval_s, logger=log)
        finally:
            if self.active:
                with contextlib.suppress(Error):
                    await self.history.drop_lease(LEASE, self.holder)

    async def _tick_on_the_second(self) -> float:
        try:
            await self.tick()
        except Error:
            self.active = False  # take the lease and reconcile again before writing
            raise
        interval = self.config.summarizer.interval_s
        return interval - (time.time() % interval)  # on the second

    async def tick(self) -> bool:
        """One second's work; True if a history document was written."""
        now = self.clock()
        if not await self.history.take_lease(LEASE, self.holder, now,
                                             self.config.summarizer.lease_s):
            if self.active:
                log.info("summarizer lease lost", extra={"action": "lease_lost"})
            self.active = False
            return False
        if not self.active or time.monotonic() - self.reconciled_at > RECONCILE_S:
            await self.reconcile()
        await self.catch_up()
        summary = self.model.summary()
        written = False
        if summary != self.last:
            written = await self.history.write(history_document(summary, second(now)))
            if written:
                await self.events.insert([new_event(
                    "summary", channel="queue", author=self.holder, now=now,
                    data={"counts": summary.counts, "total": summary.total,
                          "jobs": summary.rows()})])
            self.last = summary
        if time.monotonic() - self.rolled_at > ROLLUP_EVERY_S:
            await self.roll_up(now)
        return written

    async def reconcile(self) -> None:
        """Rebuild the counts from sys.queue (at takeover and now and then)."""
        if not self.active:
            log.info("summarizer active: %s", self.holder, extra={"action": "takeover"})
            previous = await self.history.latest("second")
            self.last = summary_of(previous) if previous else None
        self.reader.start_at(await self.events.latest_seq() or ObjectId.from_datetime(
            self.clock() - timedelta(seconds=self.config.relay_bound_s)))
        self.model.load(await self.history.queue_snapshot())
        self.active = True
        self.reconciled_at = time.monotonic()

    async def catch_up(self) -> None:
        """Apply the queue events not applied yet (also ones relayed late)."""
        for event in await self.reader.read():
            self.model.apply(event)

    async def roll_up(self, now: datetime) -> None:
        """Per-minute and per-hour documents for the last complete periods, and
        retention of every resolution and of the journal, events and job logs."""
        cfg = self.config.summarizer
        minute = now.replace(second=0, microsecond=0)
        for start in (minute - timedelta(minutes=2), minute - timedelta(minutes=1)):
            await self._roll("second", "minute", start, timedelta(minutes=1))
        hour = now.replace(minute=0, second=0, microsecond=0)
        await self._roll("minute", "hour", hour - timedelta(hours=1), timedelta(hours=1))
        await self.history.delete_before("second", now - timedelta(days=cfg.second_retention_days))
        await self.history.delete_before("minute", now - timedelta(days=cfg.minute_retention_days))
        await self.history.delete_before("hour", now - timedelta(days=cfg.hour_retention_days))
        await apply_retention(self.store, self.config.retention, now)
        self.rolled_at = time.monotonic()

    async def _roll(self, source: str, target: str, start: datetime, span: timedelta) -> None:
        docs, _ = await self.history.between(source, start, start + span, newest_first=False)
        carried = await self.history.latest(source, before=start)
        doc = rollup(([carried] if carried else []) + docs, start, target)
        if doc is not None:
            await self.history.upsert(doc)


def services(config: Config, store: Store) -> list[Summarizer]:
    return [Summarizer(store, config)]
