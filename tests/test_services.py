"""Daemons: waiting for MongoDB with backoff, running services until stopped, logs."""

import asyncio
import json
import logging

import pytest

from monq.core.embedded import free_port
from monq.core.logs import JsonFormatter, TextFormatter
from monq.core.services import run_services, wait_for_database
from monq.core.store import Store


async def test_wait_for_database_retries_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    store = Store(f"mongodb://127.0.0.1:{free_port()}/monq", timeout_s=0.2)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, "monq.services")
    task = asyncio.create_task(wait_for_database(store, stop, "tester"))

    def logged_retries() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "action", None) == "database_retry"]

    async with asyncio.timeout(30):
        while len(logged_retries()) < 2:
            await asyncio.sleep(0.05)
    stop.set()
    assert await task is False
    retries = logged_retries()
    assert len(retries) >= 2
    assert retries[1].delay_s > retries[0].delay_s  # backing off
    await store.close()


async def test_wait_for_database_returns_when_it_answers(store: Store) -> None:
    assert await wait_for_database(store, asyncio.Event()) is True


class Ticker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ticks = 0
        self.stopped = False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.ticks += 1
            await asyncio.sleep(0.01)
        self.stopped = True


class Broken:
    name = "broken"

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")


async def test_run_services_until_stop() -> None:
    a, b = Ticker("a"), Ticker("b")
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    await run_services([a, b], stop)
    assert a.ticks > 1 and b.ticks > 1
    assert a.stopped and b.stopped


async def test_a_failing_service_stops_the_others() -> None:
    a = Ticker("a")
    with pytest.raises(RuntimeError, match="boom"):
        await run_services([a, Broken()], asyncio.Event())
    assert a.stopped


def test_log_formats_carry_the_action() -> None:
    record = logging.LogRecord("monq.worker", logging.INFO, __file__, 1, "claimed %s", ("j1",),
                               None)
    record.action = "claim"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "claimed j1"
    assert doc["action"] == "claim"
    assert doc["logger"] == "monq.worker"
    assert "action=claim" in TextFormatter().format(record)
