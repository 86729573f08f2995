"""The API while MongoDB does not answer: requests get a 503 naming the database and
the reason within the requests' time budget (not after the 10 to 20 s the driver
takes to give a silent server up), /health says what is wrong, and everything
answers again once the database is back, without restarting the API server.

Each test owns its database process (never the suite's shared server): it is paused
with SIGSTOP, or killed and started again on the same port and data.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from monq.api.server import ApiServer
from monq.core.config import Config
from monq.core.embedded import EmbeddedServer, free_port
from monq.core.store import Store, with_database
from tests.api_fixtures import ADMIN_PASSWORD, ApiClient, Reply, serving
from tests.conftest import untraced_children

# Well under the 10-20 s the driver needs to give up a silent server by itself: a
# reply that only comes from the driver's monitor would not arrive inside it.
CLIENT_TIMEOUT_S = 8.0
RECOVERY_WAIT_S = 60.0


class OwnDatabase:
    """A SecantusDB process of the test's own, on a free port, with data on disk."""

    def __init__(self, path: Path) -> None:
        self.server = EmbeddedServer("127.0.0.1", free_port(), path)
        with untraced_children():  # a database server: no monq code to measure
            self.server.start()

    @property
    def url(self) -> str:
        return with_database(self.server.url, "monq")

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.server.process is not None:
            os.kill(self.pid, signal.SIGCONT)

    def restart(self) -> None:
        with untraced_children():  # a database server: no monq code to measure
            self.server.start()

    def stop(self) -> None:
        self.resume()
        self.server.stop()


@pytest.fixture
def database(tmp_path: Path) -> Any:
    db = OwnDatabase(tmp_path / "db")
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture
async def outage_api(database: OwnDatabase, config: Config) -> AsyncIterator[ApiClient]:
    store = Store(database.url, timeout_s=3)
    await store.ensure_indexes()
    server = ApiServer(config.with_values(mongodb={"url": database.url},
                                          api={"port": 0, "database_timeout_s": 1.0}),
                       store, out=io.StringIO())
    try:
        async with serving(server) as client:
            try:
                yield client
            finally:
                database.resume()
    finally:
        await store.close()


async def call(api: ApiClient, path: str, token: str | None = None) -> Reply:
    """One request that must be answered by the API itself, not cut off by the client."""
    return await asyncio.wait_for(api.call("GET", path, token=token), CLIENT_TIMEOUT_S)


async def answers_again(api: ApiClient, path: str, token: str) -> Reply:
    """The first 200 after an outage (the database is back: nothing else changes)."""
    reply = await call(api, path, token)
    deadline = asyncio.get_running_loop().time() + RECOVERY_WAIT_S
    while reply.code != 200 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        reply = await call(api, path, token)
    return reply


def assert_unavailable(reply: Reply, *reasons: str) -> None:
    assert reply.code == 503, reply.body
    assert reply.body["code"] == 503
    assert "MongoDB at mongodb://127.0.0.1:" in reply.body["message"]
    assert any(f"does not answer ({reason})" in reply.body["message"] for reason in reasons), \
        reply.body["message"]
    assert reply.headers["Retry-After"] == "2"
    assert "Traceback" not in str(reply.body)


async def test_paused_database_gives_503_with_the_reason_and_recovers(
        outage_api: ApiClient, database: OwnDatabase) -> None:
    token = await outage_api.login("admin", ADMIN_PASSWORD)
    assert (await call(outage_api, "/jobs", token)).code == 200
    database.pause()
    # every request, the first included, is answered by the API's own budget
    for path in ("/jobs", "/jobs", "/workers"):
        assert_unavailable(await call(outage_api, path, token), "no answer in time")
    health = await call(outage_api, "/health")
    assert_unavailable(health, "no answer in time")
    assert health.data["mongodb"] == "down"
    assert health.data["reason"] == "no answer in time"
    assert health.data["down_since"]
    database.resume()
    assert (await answers_again(outage_api, "/jobs", token)).code == 200
    health = await call(outage_api, "/health")
    assert health.code == 200, health.body
    assert health.data["mongodb"] == "ok"
    assert "servers" not in health.data  # addresses only for who may read metrics
    health = await call(outage_api, "/health", token)
    assert [s["type"] for s in health.data["servers"]] in (["RSPrimary"], ["Standalone"])
    assert health.data["events"] in ("change_stream", "poll")


async def test_restarted_database_gives_503_then_recovers_with_its_data(
        outage_api: ApiClient, database: OwnDatabase) -> None:
    token = await outage_api.login("admin", ADMIN_PASSWORD)
    database.server.stop()
    # the first request may meet a pooled connection the server closed as it went
    assert_unavailable(await call(outage_api, "/jobs", token),
                       "connection refused", "connection lost")
    assert_unavailable(await call(outage_api, "/jobs", token), "connection refused")
    health = await call(outage_api, "/health", token)
    assert_unavailable(health, "connection refused")
    assert health.data["reason"] == "connection refused"
    assert health.data["servers"][0]["error"] == "connection refused"
    database.restart()
    # the same token still works: the users were kept on disk, the server not restarted
    assert (await answers_again(outage_api, "/jobs", token)).code == 200
    health = await call(outage_api, "/health", token)
    assert health.code == 200
    assert health.data["servers"][0]["error"] is None
