"""The metrics of one API server process, in the Prometheus text format.

One `Instruments` per application (never a module global: a test process runs several
servers), holding its own ``CollectorRegistry`` with two kinds of metrics:

- fed by the event hub, which sees every sys.event document once: transitions by event
  name (``rate()`` of it is transitions per second), claim latency (``waited_s`` of
  ``request_start_job`` events: from the job becoming due to a worker claiming it) and
  the run time of completed jobs (``runtime_s`` of ``complete_job`` events). They count
  from this process's start, and every API server sees every event: aggregate them
  across servers with ``max``, not ``sum``.
- read at scrape time (`CurrentValues`): queued jobs by name and state, workers and
  their heartbeat age, notification backlog (all read from MongoDB by the handler just
  before rendering, see `monq.core.store.metrics`), and the hub's stream lag, mode,
  deliveries and websocket clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monq.api.stream import EventHub
from monq.core.config import Config
from monq.core.times import as_utc
from monq.history.gauges import StoreReadings
from monq.queue.states import EventName

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("pending", "running", "deferred", "failed")
FLAGS = ("zombie", "wall", "killed", "removed")
EVENT_NAMES = frozenset(str(e) for e in EventName)
CLAIM_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                           30.0, 60.0, 300.0, 900.0, 3600.0)
RUNTIME_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                     1800.0, 3600.0, 14400.0, 43200.0)


def _seconds(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


class Instruments:
    """The registry of one API server; `observe` is the hub's hook for each event."""

    def __init__(self, config: Config, hub: EventHub | None = None) -> None:
        self.config = config
        self.hub = hub
        self.registry = CollectorRegistry(auto_describe=True)
        self.transitions = Counter(
            "monq_transitions", "Job state changes seen on the event stream, by event name",
            ["event"], registry=self.registry)
        self.claim_latency = Histogram(
            "monq_claim_latency_seconds", "Time from a job becoming due to a worker "
            "claiming it", ["name"], buckets=CLAIM_LATENCY_BUCKETS_S, registry=self.registry)
        self.runtime = Histogram(
            "monq_job_runtime_seconds", "Run time of completed jobs (start to completion)",
            ["name"], buckets=RUNTIME_BUCKETS_S, registry=self.registry)
        self.current = CurrentValues(self)
        self.registry.register(self.current)
        if hub is not None:
            hub.observers.append(self.observe)

    def observe(self, event: dict[str, Any]) -> None:
        """Count one event of the stream (each event id is handed over once)."""
        name = event.get("name")
        if event.get("channel") != "queue" or name not in EVENT_NAMES:
            return  # chat messages, summaries, names no code of ours writes
        self.transitions.labels(event=name).inc()
        data = event.get("data") or {}
        job = str(data.get("name") or "")
        waited = _seconds(data.get("waited_s"))
        runtime = _seconds(data.get("runtime_s"))
        if name == EventName.REQUEST_START_JOB and waited is not None:
            self.claim_latency.labels(name=job).observe(waited)
        elif name == EventName.COMPLETE_JOB and runtime is not None:
            self.runtime.labels(name=job).observe(runtime)

    def render(self, readings: StoreReadings | None, now: datetime) -> bytes:
        """The text exposition, with `readings` from MongoDB (None: it did not answer).

        Called without an ``await`` between setting the readings and rendering, so two
        scrapes at once never see each other's readings."""
        self.current.readings, self.current.now = readings, now
        try:
            return generate_latest(self.registry)
        finally:
            self.current.readings = None


class CurrentValues(Collector):
    """Values read at scrape time: MongoDB's readings and the hub's state."""

    def __init__(self, instruments: Instruments) -> None:
        self.instruments = instruments
        self.readings: StoreReadings | None = None
        self.now = datetime.now(UTC)

    def describe(self) -> Iterable[Metric]:
        return []  # the families vary with what MongoDB answered: nothing to check

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("monq_mongodb_up", "1 if MongoDB answered this scrape",
                                value=0 if self.readings is None else 1)
        yield from self._hub()
        if self.readings is not None:
            yield from self._queue(self.readings)
            yield from self._workers(self.readings)
            yield GaugeMetricFamily(
                "monq_notifications_pending", "Notification deliveries waiting to be sent",
                value=self.readings.notifications_pending)

    def _hub(self) -> Iterator[Metric]:
        hub = self.instruments.hub
        clients = GaugeMetricFamily("monq_websocket_clients",
                                    "Clients connected to the event websocket")
        lag = GaugeMetricFamily("monq_event_stream_lag_seconds",
                                "Age of the newest event when this server dispatched it")
        delivered = CounterMetricFamily("monq_event_deliveries",
                                        "Events handed to websocket clients")
        mode = GaugeMetricFamily("monq_event_stream_mode",
                                 "The source of the event stream (1 for the current one)",
                                 labels=["mode"])
        if hub is not None:
            clients.add_metric([], len(hub.subscribers))
            lag.add_metric([], hub.lag_s)
            delivered.add_metric([], hub.delivered)
            for choice in ("change_stream", "poll", "stopped"):
                mode.add_metric([choice], 1 if hub.mode == choice else 0)
        yield from (clients, lag, delivered, mode)

    def _queue(self, readings: StoreReadings) -> Iterator[Metric]:
        doc = readings.history or {}
        by_state = GaugeMetricFamily("monq_queue_jobs", "Jobs in the queue by state",
                                     labels=["state"])
        for state in STATES:
            by_state.add_metric([state], int(doc.get(state) or 0))
        by_name: dict[tuple[str, str], int] = {}
        flagged = dict.fromkeys(FLAGS, 0)
        for row in doc.get("jobs") or []:
            key = (str(row.get("name")), str(row.get("state")))
            by_name[key] = by_name.get(key, 0) + int(row.get("n") or 0)
            for flag in FLAGS:
                if row.get(flag):
                    flagged[flag] += int(row.get("n") or 0)
        jobs = GaugeMetricFamily("monq_jobs", "Jobs in the queue by job name and state",
                                 labels=["name", "state"])
        for (name, state), n in sorted(by_name.items()):
            jobs.add_metric([name, state], n)
        flags = GaugeMetricFamily("monq_jobs_flagged", "Running jobs flagged zombie (no "
                                  "heartbeat), wall (past wall time), killed or removed",
                                  labels=["flag"])
        for flag, n in flagged.items():
            flags.add_metric([flag], n)
        created = doc.get("created")
        summary_at = GaugeMetricFamily(
            "monq_queue_summary_timestamp_seconds", "When the summarizer last saw the queue "
            "change (the counts above are as of then)")
        if isinstance(created, datetime):
            summary_at.add_metric([], as_utc(created).timestamp())
        lease = readings.summarizer_lease or {}
        expires = lease.get("expires_at")
        summarizer = GaugeMetricFamily(
            "monq_summarizer_up", "1 while a summarizer holds its lease (keeps the counts "
            "current)", value=1 if isinstance(expires, datetime)
            and as_utc(expires) > self.now else 0)
        yield from (by_state, jobs, flags, summary_at, summarizer)

    def _workers(self, readings: StoreReadings) -> Iterator[Metric]:
        dead_after_s = self.instruments.config.worker.dead_after_s
        count = GaugeMetricFamily("monq_workers", "Workers by pool, alive or dead (no "
                                  "heartbeat for worker.dead_after_s)", labels=["pool", "alive"])
        age = GaugeMetricFamily("monq_worker_heartbeat_age_seconds",
                                "Seconds since the worker's last heartbeat",
                                labels=["worker", "host", "pool"])
        running = GaugeMetricFamily("monq_worker_running_jobs",
                                    "Jobs the worker runs now", labels=["worker"])
        slots = GaugeMetricFamily("monq_worker_concurrency",
                                  "Jobs the worker may run at once", labels=["worker"])
        counts: dict[tuple[str, str], int] = {}
        for doc in readings.workers:
            pool = str(doc.get("pool") or "")
            seconds = max(0.0, (self.now - as_utc(doc["heartbeat"])).total_seconds())
            alive = "true" if seconds < dead_after_s else "false"
            counts[(pool, alive)] = counts.get((pool, alive), 0) + 1
            worker = str(doc["_id"])
            age.add_metric([worker, str(doc.get("host") or ""), pool], seconds)
            running.add_metric([worker], len(doc.get("jobs") or []))
            slots.add_metric([worker], int(doc.get("concurrency") or 0))
        for (pool, alive), n in sorted(counts.items()):
            count.add_metric([pool, alive], n)
        yield from (count, age, running, slots)
