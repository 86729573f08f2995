"""GET /api/v1/metrics: the server's metrics in the Prometheus text format.

Prometheus scrapers seldom hold a JWT, so besides a logged-in user with the
permission ``api://monq.api.metrics`` the route accepts the static bearer token of
``api.metrics_token`` (compared in constant time; empty turns it off). The values
are read at scrape time: see `monq.api.instruments` for what each metric is and
`monq.history.gauges` for the reads (each index-backed, none growing with the
queue). When MongoDB does not answer, the reply is still a 200 with
``monq_mongodb_up 0`` and the metrics this process holds in memory.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime

from monq.api.base import BaseHandler
from monq.api.instruments import CONTENT_TYPE, Instruments
from monq.core.errors import Error
from monq.history.gauges import Gauges, StoreReadings

log = logging.getLogger("monq.api")


class MetricsHandler(BaseHandler):
    """Metrics in the Prometheus text format (queue, workers, event stream, websocket
    clients, notifications); also open to ``Authorization: Bearer <api.metrics_token>``."""

    permission = "monq.api.metrics"
    summary = "metrics in the Prometheus text format"
    produces = "text/plain"

    def _has_metrics_token(self) -> bool:
        expected = self.ctx.config.api.metrics_token
        header = self.request.headers.get("Authorization", "")
        if not expected or not header.lower().startswith("bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), expected.encode())

    async def prepare(self) -> None:
        if self._has_metrics_token():
            self.set_header("X-Request-Id", self.request_id)
            self.args = self._parse_query()
            return
        await super().prepare()

    async def get(self) -> None:
        if self.ctx.metrics is None:
            self.ctx.metrics = Instruments(self.ctx.config, self.ctx.hub)
        now = datetime.now(UTC)
        readings: StoreReadings | None
        try:
            readings = await Gauges(self.ctx.store).read(now)
        except Error as exc:
            log.warning("metrics without MongoDB's values: %s", exc,
                        extra={"action": "metrics_store_failed"})
            readings = None
        body = self.ctx.metrics.render(readings, now)
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(body)
