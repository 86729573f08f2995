"""GET /api/v1/metrics over real sockets, parsed as Prometheus text: the values match
a seeded queue, a real worker process, a connected websocket client and notification
deliveries; who may scrape; and the figures the queue puts in events for it."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from monq.api.instruments import Instruments
from monq.api.server import ApiServer
from monq.core.config import Config
from monq.core.store import Store, layout
from monq.core.store.metrics import StoreReadings
from monq.history.daemon import Summarizer
from monq.queue.queue import Queue, WorkerRef
from tests.api_fixtures import ApiClient, serving
from tests.queue_fixtures import DUMMY
from tests.worker_fixtures import wait_job
from tests.ws_client import EventClient

METRICS_TOKEN = "scrape-token-0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition by (name, labels); the parser refuses bad text."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


async def scrape(base_url: str, token: str | None) -> tuple[int, str, str]:
    http = AsyncHTTPClient(force_instance=True)
    try:
        reply = await http.fetch(base_url + "/api/v1/metrics", raise_error=False,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    finally:
        http.close()
    return reply.code, reply.headers.get("Content-Type", ""), reply.body.decode()


async def scrape_until(base_url: str, token: str, ready: Callable[[Samples], bool],
                       timeout_s: float = 20) -> Samples:
    deadline = time.monotonic() + timeout_s
    while True:
        code, _, text = await scrape(base_url, token)
        assert code == 200, text
        samples = parse(text)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.1)


@pytest.fixture
async def token_server(config: Config, store: Store) -> AsyncIterator[str]:
    """A second API server whose api.metrics_token is set; its base URL."""
    server = ApiServer(config.with_values(api={"port": 0, "metrics_token": METRICS_TOKEN}),
                       store, out=io.StringIO())
    async with serving(server) as client:
        yield client.base_url


@pytest.mark.slow
async def test_a_scrape_shows_the_queue_a_worker_a_client_and_the_backlog(
        api: ApiClient, config: Config, store: Store, queue: Queue,
        start_worker: Callable[..., Any]) -> None:
    # seeded: jobs in a pool no worker serves, so they stay as they are
    for _ in range(3):
        await queue.enqueue(DUMMY, pool="reserved")
    await queue.enqueue("tests.jobtypes.Quick", pool="reserved", hold=True)
    await store.collection(layout.NOTIFICATION).insert_many(
        [{"state": "pending", "next_at": datetime.now(UTC)} for _ in range(2)]
        + [{"state": "failed", "next_at": datetime.now(UTC)}])
    summarizer = Summarizer(store, config)
    assert await summarizer.tick()
    admin = await api.admin()
    client = await EventClient.connect(api.base_url, admin)
    await client.interest("queue")
    start_worker()
    ran = await queue.enqueue(DUMMY, {"sleep": 0.2, "steps": 1})
    await wait_job(queue, ran.id, "complete")
    await summarizer.tick()  # its lease (5 s) may have run out while the worker started

    samples = await scrape_until(api.base_url, admin, lambda s: bool(
        value(s, "monq_job_runtime_seconds_count", name=DUMMY)
        and value(s, "monq_workers", pool="default", alive="true")))
    client.close()

    assert value(samples, "monq_mongodb_up") == 1
    assert value(samples, "monq_queue_jobs", state="pending") == 4
    assert value(samples, "monq_queue_jobs", state="running") == 0
    assert value(samples, "monq_jobs", name=DUMMY, state="pending") == 3
    assert value(samples, "monq_jobs", name="tests.jobtypes.Quick", state="pending") == 1
    assert value(samples, "monq_summarizer_up") == 1
    assert value(samples, "monq_notifications_pending") == 2
    assert value(samples, "monq_websocket_clients") == 1
    assert value(samples, "monq_workers", pool="default", alive="true") == 1
    ages = [v for (name, _), v in samples.items()
            if name == "monq_worker_heartbeat_age_seconds"]
    assert len(ages) == 1 and 0 <= ages[0] < 10
    # the events of the job the worker ran, counted by the hub
    assert value(samples, "monq_transitions_total", event="enqueue_job") == 5
    assert value(samples, "monq_transitions_total", event="complete_job") == 1
    assert value(samples, "monq_claim_latency_seconds_count", name=DUMMY) == 1
    assert value(samples, "monq_job_runtime_seconds_count", name=DUMMY) == 1
    runtime = value(samples, "monq_job_runtime_seconds_sum", name=DUMMY)
    assert runtime is not None and 0.2 <= runtime < 10
    assert value(samples, "monq_job_runtime_seconds_bucket", name=DUMMY, le="0.1") == 0
    assert value(samples, "monq_job_runtime_seconds_bucket", name=DUMMY, le="+Inf") == 1
    assert value(samples, "monq_event_deliveries_total") >= 1  # type: ignore[operator]


async def test_scraping_needs_the_permission_or_the_metrics_token(
        api: ApiClient, token_server: str) -> None:
    code, content_type, text = await scrape(api.base_url, None)
    assert code == 401
    viewer = await api.user("viewer")
    assert (await scrape(api.base_url, viewer))[0] == 403
    # without api.metrics_token configured, no static token is accepted
    assert (await scrape(api.base_url, METRICS_TOKEN))[0] == 401
    scraper = await api.user("scraper", perms=["api://monq.api.metrics"])
    code, content_type, text = await scrape(api.base_url, scraper)
    assert code == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert value(parse(text), "monq_mongodb_up") == 1

    code, _, text = await scrape(token_server, METRICS_TOKEN)
    assert code == 200 and value(parse(text), "monq_websocket_clients") == 0
    assert (await scrape(token_server, METRICS_TOKEN + "x"))[0] == 401
    assert (await scrape(token_server, viewer))[0] == 403
    assert (await scrape(token_server, scraper))[0] == 200
    assert METRICS_TOKEN not in text


async def test_the_route_is_described_as_text_in_openapi(api: ApiClient) -> None:
    reply = await api.call("GET", "/openapi.json")
    operation = reply.body["paths"]["/api/v1/metrics"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/plain"]
    assert list(operation["responses"]["401"]["content"]) == ["application/json"]
    assert operation["x-permission"] == "api://monq.api.metrics"


def test_without_mongodb_the_process_metrics_still_render(config: Config) -> None:
    instruments = Instruments(config)
    instruments.observe({"name": "enqueue_job", "channel": "queue", "data": {"name": "a.B"}})
    instruments.observe({"name": "hello", "channel": "queue", "data": {}})
    instruments.observe({"name": "message", "channel": "chat", "data": {}})
    samples = parse(instruments.render(None, datetime.now(UTC)).decode())
    assert value(samples, "monq_mongodb_up") == 0
    assert value(samples, "monq_transitions_total", event="enqueue_job") == 1
    assert [k for k in samples if k[0] == "monq_transitions_total"] == [
        ("monq_transitions_total", frozenset({("event", "enqueue_job")}))]
    assert not [k for k in samples if k[0] in ("monq_queue_jobs", "monq_workers")]


def test_workers_past_dead_after_count_as_dead(config: Config) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    dead_after = config.worker.dead_after_s
    readings = StoreReadings(history=None, summarizer_lease=None, workers=[
        {"_id": "w-alive", "host": "h1", "pool": "default", "concurrency": 4,
         "heartbeat": now - timedelta(seconds=1), "jobs": [{"_id": 1}, {"_id": 2}]},
        {"_id": "w-dead", "host": "h2", "pool": "default", "concurrency": 2,
         "heartbeat": now - timedelta(seconds=dead_after + 1), "jobs": []}])
    samples = parse(Instruments(config).render(readings, now).decode())
    assert value(samples, "monq_workers", pool="default", alive="true") == 1
    assert value(samples, "monq_workers", pool="default", alive="false") == 1
    assert value(samples, "monq_worker_heartbeat_age_seconds", worker="w-dead", host="h2",
                 pool="default") == dead_after + 1
    assert value(samples, "monq_worker_running_jobs", worker="w-alive") == 2
    assert value(samples, "monq_worker_concurrency", worker="w-dead") == 2
    assert value(samples, "monq_summarizer_up") == 0


async def test_claim_and_completion_events_carry_the_wait_and_the_run_time(
        store: Store, config: Config) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    now = [t0]
    queue = Queue(store, config, author="tester", clock=lambda: now[0])
    job = await queue.enqueue(DUMMY, delay_s=5)
    now[0] = t0 + timedelta(seconds=12)
    claim = await queue.claim(WorkerRef(id="w1", host="h", pid=1))
    assert claim is not None
    now[0] = t0 + timedelta(seconds=13)
    await queue.start(job.id, claim.token)
    now[0] = t0 + timedelta(seconds=15.5)
    await queue.complete(job.id, claim.token)
    events = {e["name"]: e["data"] for e in await queue.events(job.id)}
    assert events["request_start_job"]["waited_s"] == 7.0  # due at +5, claimed at +12
    assert events["complete_job"]["runtime_s"] == 2.5
