"""A worker under a backlog of short jobs claims ahead of its free slots (a claim
query per several jobs, not per job), and what it claimed ahead is never lost: a
kill asked for ends such a job unstarted, and a worker that stops gives them back
at once. The worker runs in this process (its executors are real processes), so
that the tests can see what it holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import monitoring

from monq.core.config import Config
from monq.core.store import Store, layout
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue
from monq.worker import daemon
from monq.worker.daemon import Worker
from tests.queue_fixtures import event_names
from tests.worker_fixtures import wait_job

pytestmark = pytest.mark.slow

NOOP = "monq.jobs.bench.NoopJob"
SLEEPER = "monq.jobs.example.DummyJob"


class ClaimQueries(monitoring.CommandListener):
    """The claim queries a store sends, in order: reads of claimable jobs and single
    claims of the most urgent (``read``), and claims of jobs by id with no read
    before them (``by_id``; the claim of candidates just read is part of the read)."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self._read_candidates = False  # their claim comes next

    @property
    def count(self) -> int:
        return len(self.kinds)

    def reset(self) -> None:
        self.kinds.clear()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        body, name = event.command, event.command_name
        if body.get(name) != layout.QUEUE:
            return
        if name == "find" and "query_at" in body.get("filter", {}):
            self.kinds.append("read")
            self._read_candidates = True
        elif name == "findAndModify" and "sort" in body:
            self.kinds.append("read")
        elif name == "update" and isinstance(
                body["updates"][0]["u"].get("$set", {}).get("locked"), dict):  # a lease
            if not self._read_candidates:
                self.kinds.append("by_id")
            self._read_candidates = False

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def worker_config(config: Config) -> Config:
    return config.with_values(worker={"poll_max_s": 0.2, "heartbeat_s": 0.5,
                                      "shutdown_grace_s": 5})


async def wait_until(predicate: Any, what: str, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_backlog_of_short_jobs_is_claimed_several_at_a_time(
        db_url: str, queue: Queue, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    # however slow this machine runs a no-op job, it counts as short
    monkeypatch.setattr(daemon, "AHEAD_WAIT_S", 5.0)
    claims = ClaimQueries()
    store = Store(db_url, timeout_s=10, event_listeners=[claims])
    jobs = await queue.enqueue_many([EnqueueRequest(NOOP) for _ in range(40)])
    try:
        async with running(Worker(store, worker_config(config), concurrency=2)):
            for job in jobs:
                await wait_job(queue, job.id, "complete")
    finally:
        await store.close()
    # a claim per free slot takes at most two jobs a query: 20 queries at least
    assert claims.count <= 12, claims.count
    for job in jobs:
        assert await event_names(queue, job.id) == [
            "enqueue_job", "request_start_job", "start_job", "complete_job"]


async def held_ahead(store: Store, queue: Queue, config: Config,
                     monkeypatch: pytest.MonkeyPatch) -> tuple[Worker, list[Any]]:
    """A worker whose two slots run sleeping jobs while more wait claimed ahead."""
    monkeypatch.setattr(daemon, "AHEAD_WAIT_S", 100.0)  # 1 s jobs count as short
    jobs = await queue.enqueue_many(
        [EnqueueRequest(SLEEPER, {"sleep": 1.0, "steps": 1}) for _ in range(10)])
    return Worker(store, worker_config(config), concurrency=2), jobs


async def test_a_job_killed_while_claimed_ahead_ends_killed_unstarted(
        store: Store, queue: Queue, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    worker, _ = await held_ahead(store, queue, config, monkeypatch)
    async with running(worker):
        await wait_until(lambda: len(worker.ahead) >= 2, "jobs claimed ahead")
        victim = worker.ahead[-1].id
        await queue.kill(victim)
        killed = await wait_job(queue, victim, "killed")
        assert killed.started_at is None
        names = await event_names(queue, victim)
        assert names == ["enqueue_job", "request_start_job", "request_kill_job", "kill_job"]


async def test_a_stopping_worker_gives_back_what_it_claimed_ahead_at_once(
        store: Store, queue: Queue, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    worker, jobs = await held_ahead(store, queue, config, monkeypatch)
    async with running(worker):
        await wait_until(lambda: len(worker.ahead) >= 2, "jobs claimed ahead")
        ahead = [job.id for job in worker.ahead]
    for job_id in ahead:
        record = await queue.get(job_id)
        assert record.state == "pending" and record.started_at is None
        names = await event_names(queue, job_id)
        assert names[-1] == "release_job" and "start_job" not in names
    # the others: run to the end within the grace, or given back; none lost
    for job in jobs:
        assert (await queue.get(job.id)).state in ("complete", "pending")
