"""What GET /metrics reads from MongoDB at scrape time (see `monq.core.store.metrics`
for the queries, each index-backed): the summarizer's latest counts and its lease,
workers seen lately, the notification backlog."""

from __future__ import annotations

from datetime import datetime, timedelta

from monq.core.store import Store
from monq.core.store.metrics import MetricsStore, StoreReadings
from monq.queue.workers import RECENTLY_DEAD_S

__all__ = ["Gauges", "StoreReadings"]


class Gauges:
    def __init__(self, store: Store) -> None:
        self.metrics = MetricsStore(store)

    async def read(self, now: datetime) -> StoreReadings:
        """One scrape's readings; workers dead for longer than `RECENTLY_DEAD_S` are left
        out."""
        return await self.metrics.read(now - timedelta(seconds=RECENTLY_DEAD_S))
