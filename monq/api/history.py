"""Queue history: GET /jobs/history (the history documents, paginated) and
GET /queue/history (a time-bucketed series for charts: the maximum per bucket).

A user who may not read a job name sees its counts under ``UnauthorizedJob``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from monq.api.base import BaseHandler
from monq.core.auth.permissions import may_read_job
from monq.core.errors import BadRequest
from monq.core.store.history import HistoryStore
from monq.history.summary import WAITING_AND_RUNNING, mask_rows

RESOLUTIONS = ("second", "minute", "hour", "auto")
MAX_BUCKETS = 1000


def pick_resolution(resolution: str, start: datetime | None, end: datetime | None) -> str:
    if resolution != "auto":
        return resolution
    if start is None:
        return "second"
    span = (end or datetime.now(UTC)) - start
    if span <= timedelta(hours=2):
        return "second"
    return "minute" if span <= timedelta(days=7) else "hour"


class HistoryBase(BaseHandler):
    def time_range(self) -> tuple[datetime | None, datetime | None, str]:
        start, end = self.args.get("start"), self.args.get("end")
        if start and end and end < start:
            raise BadRequest("parameter 'end': before 'start'")
        resolution = self.args.get("resolution", "auto")
        if resolution not in RESOLUTIONS:
            raise BadRequest(f"parameter 'resolution': one of {', '.join(RESOLUTIONS)}")
        return start, end, pick_resolution(resolution, start, end)

    def row(self, doc: dict[str, Any]) -> dict[str, Any]:
        assert self.principal is not None
        principal = self.principal
        out = {"created": doc["created"].replace(tzinfo=UTC) if doc["created"].tzinfo is None
               else doc["created"], "total": doc.get("total", 0)}
        out.update({s: doc[s] for s in WAITING_AND_RUNNING if doc.get(s)})
        out["jobs"] = mask_rows(doc.get("jobs", []), lambda n: may_read_job(principal, n))
        return out


class JobHistoryHandler(HistoryBase):
    """History documents, newest first (``sort=1``: oldest first)."""

    permission = "monq.api.jobs.history"
    summary = "queue history: counts per second, minute or hour (paginated)"
    query = {"GET": {"page": int, "per_page": int, "sort": int, "start": datetime,
                     "end": datetime, "resolution": str}}

    async def get(self) -> None:
        page, per_page = self.page_args()
        sort = self.args.get("sort", -1)
        if sort not in (1, -1):
            raise BadRequest("parameter 'sort': 1 (oldest first) or -1 (newest first)")
        start, end, resolution = self.time_range()
        docs, total = await HistoryStore(self.ctx.store).between(
            resolution, start, end, skip=page * per_page, limit=per_page,
            newest_first=sort == -1)
        self.reply_page([self.row(d) for d in docs], total, page, per_page)


class QueueHistoryHandler(HistoryBase):
    """A series of ``buckets`` points from ``start`` to ``end`` (default: the last
    hour), each the maximum of every count within its bucket."""

    permission = "monq.api.jobs.history"
    summary = "queue history as a bucketed series for charts (maximum per bucket)"
    query = {"GET": {"start": datetime, "end": datetime, "buckets": int,
                     "resolution": str}}

    async def get(self) -> None:
        start, end, _ = self.time_range()
        end = end or datetime.now(UTC)
        start = start or end - timedelta(hours=1)
        buckets = self.args.get("buckets", 60)
        if not 1 <= buckets <= MAX_BUCKETS:
            raise BadRequest(f"parameter 'buckets': 1 to {MAX_BUCKETS}")
        _, _, resolution = self.time_range() if self.args.get("resolution") not in (
            None, "auto") else (None, None, pick_resolution("auto", start, end))
        store = HistoryStore(self.ctx.store)
        docs, _ = await store.between(resolution, start, end, newest_first=False)
        carried = await store.latest(resolution, before=start)
        width = (end - start) / buckets
        series, current, index = [], carried, 0
        for i in range(buckets):
            bucket_end = start + width * (i + 1)
            point = {s: 0 for s in WAITING_AND_RUNNING}
            point["total"] = 0
            members = [current] if current else []
            while index < len(docs) and _aware(docs[index]["created"]) < bucket_end:
                members.append(docs[index])
                current = docs[index]
                index += 1
            for doc in members:
                for key in (*WAITING_AND_RUNNING, "total"):
                    point[key] = max(point[key], doc.get(key, 0))
            series.append({"created": start + width * i, **point})
        self.reply(series, resolution=resolution)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
