"""The read side of queue history: pages of history documents and the bucketed series
charts draw, for GET /jobs/history, GET /queue/history and ``monq history``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from monq.core.store import Store
from monq.core.store.history import HistoryStore
from monq.core.times import as_utc
from monq.history.summary import WAITING_AND_RUNNING

RESOLUTIONS = ("second", "minute", "hour", "auto")


def pick_resolution(resolution: str, start: datetime | None, end: datetime | None) -> str:
    """The resolution to read: `resolution`, or for ``auto`` the finest whose documents
    over the span from `start` to `end` (default now) stay few."""
    if resolution != "auto":
        return resolution
    if start is None:
        return "second"
    span = (end or datetime.now(UTC)) - start
    if span <= timedelta(hours=2):
        return "second"
    return "minute" if span <= timedelta(days=7) else "hour"


class HistoryReads:
    def __init__(self, store: Store) -> None:
        self.history = HistoryStore(store)

    async def page(self, resolution: str, start: datetime | None, end: datetime | None, *,
                   skip: int = 0, limit: int = 0, newest_first: bool = True
                   ) -> tuple[list[dict[str, Any]], int]:
        """History documents of one resolution in ``[start, end)`` (no `limit`: all),
        and how many there are."""
        return await self.history.between(resolution, start, end, skip=skip, limit=limit,
                                          newest_first=newest_first)

    async def series(self, resolution: str, start: datetime, end: datetime,
                     buckets: int) -> list[dict[str, Any]]:
        """`buckets` points from `start` to `end`, each the maximum of every count within
        its bucket; the state before `start` carries into the first buckets."""
        docs, _ = await self.page(resolution, start, end, newest_first=False)
        current = await self.history.latest(resolution, before=start)
        width = (end - start) / buckets
        series, index = [], 0
        for i in range(buckets):
            bucket_end = start + width * (i + 1)
            point = {s: 0 for s in WAITING_AND_RUNNING}
            point["total"] = 0
            members = [current] if current else []
            while index < len(docs) and as_utc(docs[index]["created"]) < bucket_end:
                members.append(docs[index])
                current = docs[index]
                index += 1
            for doc in members:
                for key in (*WAITING_AND_RUNNING, "total"):
                    point[key] = max(point[key], doc.get(key, 0))
            series.append({"created": start + width * i, **point})
        return series
