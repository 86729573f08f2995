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
from monq.core.times import as_utc
from monq.history.reads import RESOLUTIONS, HistoryReads, pick_resolution
from monq.history.summary import WAITING_AND_RUNNING, mask_rows

MAX_BUCKETS = 1000

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
        out = {"created": as_utc(doc["created"]), "total": doc.get("total", 0)}
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
        docs, total = await HistoryReads(self.ctx.store).page(
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
        series = await HistoryReads(self.ctx.store).series(resolution, start, end, buckets)
        self.reply(series, resolution=resolution)
