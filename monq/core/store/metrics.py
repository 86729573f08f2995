"""The reads behind GET /metrics: one scrape's worth of current values from
MongoDB, each an index-backed query whose cost does not grow with the queue.

- queued jobs by name and state: the summarizer's latest per-second sys.history
  document (index ``resolution_created``), not an aggregation over sys.queue, whose
  cost would grow with the number of queued jobs on every scrape of every API server;
- the summarizer's lease (``_id`` lookup in sys.worker), which says whether those
  counts are being kept current;
- workers that sent a heartbeat lately (index ``heartbeat`` of sys.worker);
- notification deliveries pending in sys.notification (index ``due``, whose first
  key is ``state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monq.core.store import Store, layout

SUMMARIZER_LEASE = "lease:summarizer"


@dataclass(frozen=True)
class StoreReadings:
    """What MongoDB said at one scrape."""

    history: dict[str, Any] | None
    summarizer_lease: dict[str, Any] | None
    workers: list[dict[str, Any]] = field(default_factory=list)
    notifications_pending: int = 0


class MetricsStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.history = store.collection(layout.HISTORY)
        self.workers = store.collection(layout.WORKER)
        self.notifications = store.collection(layout.NOTIFICATION)

    async def latest_history(self) -> dict[str, Any] | None:
        async with self.store.errors():
            return await self.history.find_one({"resolution": "second"},
                                               sort=[("created", -1)])

    async def summarizer_lease(self) -> dict[str, Any] | None:
        async with self.store.errors():
            return await self.workers.find_one({"_id": SUMMARIZER_LEASE})

    async def workers_since(self, since: datetime) -> list[dict[str, Any]]:
        """Worker documents with a heartbeat at or after `since` (leases excluded)."""
        async with self.store.errors():
            return await self.workers.find(
                {"heartbeat": {"$gte": since}, "kind": "worker"},
                {"host": 1, "pid": 1, "pool": 1, "concurrency": 1, "heartbeat": 1,
                 "jobs._id": 1}).sort("heartbeat", 1).to_list(None)

    async def count_notifications(self, state: str = "pending") -> int:
        async with self.store.errors():
            return await self.notifications.count_documents({"state": state})

    async def read(self, workers_since: datetime) -> StoreReadings:
        return StoreReadings(history=await self.latest_history(),
                             summarizer_lease=await self.summarizer_lease(),
                             workers=await self.workers_since(workers_since),
                             notifications_pending=await self.count_notifications())
