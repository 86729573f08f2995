"""The event hub: one source of sys.event per server process, fanned out in memory
to every websocket subscriber.

The source is a change stream on sys.event where the server has one, resumed from
its resume token after an error (and caught up by a read of sys.event when the
token can no longer be resumed); elsewhere (a standalone server) a tailing poll.
Both reads go through an `EventReader`, the one way every reader follows sys.event:
the poll reads events after the newest one seen, and every second re-reads the
``queue.relay_bound_s`` behind it, because event ids carry the writer's clock and an
event relayed late (by a sweep after a crash) sorts before ones already seen. The
reader returns each id once, and `dispatch` skips ids delivered lately, so nothing
is delivered twice and nothing relayed within the bound is missed.

Delivery is `monq.api.fanout`: subscribers indexed by channel and job, one
rendering per distinct view, one write per socket, never a wait on a slow one.

Every ``REVOCATION_CHECK_S`` the hub reads the token versions of its subscribers' users
in one query: one who was deactivated, logged out or changed their password, or whose
token expired, is disconnected; every ``PERMISSIONS_REFRESH_S`` it re-reads their
permissions, so one whose roles changed sees events by the new ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from monq.api.fanout import Fanout, Subscription, dumps
from monq.core.auth.accounts import Accounts
from monq.core.config import Config
from monq.core.errors import Error, StreamHistoryLost
from monq.core.loops import periodic, supervise
from monq.core.store import Store
from monq.queue.reads import EventReads

log = logging.getLogger("monq.api")

REVOCATION_CHECK_S = 0.5
PERMISSIONS_REFRESH_S = 5.0
RESCAN_EVERY_S = 1.0
RETRY_MAX_S = 10.0
RECENT_MAX = 100_000
STOP_WAIT_S = 5.0


Subscriber = Subscription  # what the hub holds: one per open websocket
__all__ = ["EventHub", "RecentIds", "Subscriber", "dumps"]


class RecentIds:
    """Ids dispatched lately, oldest first, pruned by age and count."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.ids: OrderedDict[ObjectId, float] = OrderedDict()

    def add(self, event_id: ObjectId) -> bool:
        """False if the id was seen already."""
        if event_id in self.ids:
            return False
        now = time.monotonic()
        self.ids[event_id] = now
        while self.ids and (len(self.ids) > RECENT_MAX
                            or next(iter(self.ids.values())) < now - 2 * self.window_s):
            self.ids.popitem(last=False)
        return True


class EventHub:
    """The per-process fan-out of sys.event to websocket subscribers."""

    def __init__(self, store: Store, accounts: Accounts, config: Config) -> None:
        self.store = store
        self.events = EventReads(store)
        self.accounts = accounts
        self.config = config
        self.subscribers: set[Subscriber] = set()
        self.fanout = Fanout()
        self.recent = RecentIds(config.relay_bound_s)
        self.reader = self.events.follower(config.relay_bound_s, batch=10_000)
        self.last_id: ObjectId | None = None
        self.mode = "stopped"
        self.delivered = 0
        self.lag_s = 0.0
        self.observers: list[Callable[[dict[str, Any]], None]] = []  # metrics, per event
        self.ready = asyncio.Event()
        self.refreshed_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    # Life -----------------------------------------------------------------------
    async def start(self) -> None:
        self.last_id = await self.events.latest_id()
        self.reader.start_at(await self.events.latest_seq())
        await self.reader.read(load=False)  # what was there before is not news
        self._tasks = [asyncio.create_task(self._source(), name="event-source"),
                       asyncio.create_task(self._check_users(), name="event-revocation")]

    async def wait(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; raises `LoopFailed` (and sets `stop`) if one of the
        hub's loops could not go on, so that its server stops instead of serving a
        stream that no longer flows."""
        await supervise(self._tasks, stop)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # a task stuck in a call that ignores cancellation is left behind
            done, _ = await asyncio.wait(self._tasks, timeout=STOP_WAIT_S)
            for task in done:  # their failures were logged by the loop helper
                if not task.cancelled():
                    task.exception()
        for subscriber in list(self.subscribers):
            subscriber.revoke("server shutting down")
        self.mode = "stopped"

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)
        self.fanout.attach(subscriber)

    def subscribe(self, subscriber: Subscriber, channels: Iterable[str]) -> None:
        """Give `subscriber` these channels (replacing its earlier ones)."""
        if subscriber in self.subscribers:
            self.fanout.subscribe(subscriber, channels)

    def discard(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self.fanout.remove(subscriber)

    # Fan-out --------------------------------------------------------------------
    def dispatch(self, event: dict[str, Any]) -> None:
        """Hand one event to every subscriber that wants it (once per event id)."""
        event_id = event["_id"]
        if not self.recent.add(event_id):
            return
        if self.last_id is None or event_id > self.last_id:
            self.last_id = event_id
        created = event.get("created")
        if isinstance(created, datetime):
            self.lag_s = max(0.0, (datetime.now(UTC) - created).total_seconds())
        for observe in self.observers:
            observe(event)
        self.delivered += self.fanout.deliver(event)

    # Sources --------------------------------------------------------------------
    async def _source(self) -> None:
        choice = self.config.api.event_source
        if choice == "auto":
            try:
                choice = "change_stream" if await self.store.supports_change_streams() \
                    else "poll"
            except Error:
                choice = "poll"
        if choice == "change_stream":
            await self._follow_changes()
        else:
            await self._poll()

    async def _catch_up(self) -> None:
        """Dispatch what was written after the newest event seen and what appeared late
        behind it (a gap closed by a read; `dispatch` skips what it delivered)."""
        self.reader.start_at(self.reader.newest)
        while True:
            docs = await self.reader.read(limit=1000)
            for doc in docs:
                self.dispatch(doc)
            if len(docs) < 1000:
                return

    async def _follow_changes(self) -> None:
        token: Any = None

        async def follow() -> float:
            """One change stream session, until the server ends it or it fails."""
            nonlocal token
            try:
                async with self.events.changes(resume_after=token) as changes:
                    if token is None:
                        await self._catch_up()  # between the last event seen and now
                    self.mode = "change_stream"
                    self.ready.set()
                    async for change in changes:
                        token = change["_id"]
                        event = change["fullDocument"]
                        seq = event.get("seq")
                        if seq is not None and (self.reader.newest is None
                                                or seq > self.reader.newest):
                            self.reader.newest = seq  # where a catch-up would start
                        self.dispatch(event)
            except StreamHistoryLost as exc:
                log.warning("%s; reopening and reading what was missed", exc,
                            extra={"action": "event_stream_reopen"})
                token = None  # a fresh stream, and a read of sys.event closes the gap
                return 0.0
            log.info("the event change stream ended; resuming",
                     extra={"action": "event_stream_resume"})
            return 0.0

        await periodic("the event hub's change stream", follow, None, interval_s=0.1,
                       backoff_max_s=RETRY_MAX_S, logger=log)

    async def _poll(self) -> None:
        rescanned = 0.0
        self.mode = "poll"

        async def poll() -> float | None:
            nonlocal rescanned
            behind = time.monotonic() - rescanned >= RESCAN_EVERY_S
            if behind:
                rescanned = time.monotonic()
            docs = await self.reader.read(limit=10_000, behind=behind)
            for doc in docs:
                self.dispatch(doc)
            self.ready.set()
            return 0.0 if len(docs) >= 10_000 else None  # more are waiting

        await periodic("the event hub's poll", poll, None,
                       interval_s=self.config.api.event_poll_s, backoff_max_s=RETRY_MAX_S,
                       logger=log)

    # Revocation -----------------------------------------------------------------
    async def _check_users(self) -> None:
        await asyncio.sleep(REVOCATION_CHECK_S)
        await periodic("the event hub's user check", self.check_users, None,
                       interval_s=REVOCATION_CHECK_S, backoff_max_s=RETRY_MAX_S, logger=log)

    async def check_users(self) -> None:
        """Disconnect subscribers whose user is gone or deactivated, or whose token was
        revoked or expired (one query for every connected user); every
        ``PERMISSIONS_REFRESH_S`` give the others their current permissions."""
        by_user: dict[str, list[Subscriber]] = {}
        for subscriber in list(self.subscribers):
            by_user.setdefault(subscriber.principal.name, []).append(subscriber)
        if not by_user:
            return
        versions = await self.accounts.token_versions(list(by_user))
        now = time.time()
        refresh = time.monotonic() - self.refreshed_at >= PERMISSIONS_REFRESH_S
        for name, subscribers in by_user.items():
            principal = await self.accounts.principal(name) if refresh else None
            for subscriber in subscribers:
                if versions.get(name) != subscriber.token_version:
                    subscriber.revoke("token revoked")
                elif subscriber.expires_at <= now:
                    subscriber.revoke("token expired")
                elif principal is not None:
                    subscriber.principal = principal
        if refresh:
            self.refreshed_at = time.monotonic()
