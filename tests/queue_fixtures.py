"""Fixtures and helpers for queue tests: a `Queue` on the test database and a
worker identity, plus a job type registry of test-only types in `tests.jobtypes`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from monq.core.config import Config
from monq.core.store import Store
from monq.queue.queue import Queue, WorkerRef

WORKER = WorkerRef(id="w1", host="testhost", pid=1)
DUMMY = "monq.jobs.example.DummyJob"


@pytest.fixture
async def queue(store: Store, config: Config) -> AsyncIterator[Queue]:
    yield Queue(store, config, author="tester")


async def event_names(queue: Queue, job: object) -> list[str]:
    return [e["name"] for e in await queue.events(job)]  # type: ignore[arg-type]
