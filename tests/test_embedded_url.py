"""The embedded server's URL turns retryable writes off (a single node has nothing to
retry across, and SecantusDB scans every retryable write it recorded on each write)
and asks for one connection per client (its commands take turns under one lock, and
cost it more from several connections at once), and keeps whatever else the URL
says."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from monq.core.embedded import client_url
from monq.core.store import Store, database_name, with_database
from monq.core.store.workers import WATCH_AWAIT_MS, WorkerStore

ADDED = "retryWrites=false&maxPoolSize=1"


@pytest.mark.parametrize(("url", "expected"), [
    ("mongodb://127.0.0.1:27017/", f"mongodb://127.0.0.1:27017/?{ADDED}"),
    ("mongodb://127.0.0.1:27017", f"mongodb://127.0.0.1:27017/?{ADDED}"),
    ("mongodb://localhost:27017/monq", f"mongodb://localhost:27017/monq?{ADDED}"),
    ("mongodb://localhost:27017/monq?appname=x",
     f"mongodb://localhost:27017/monq?appname=x&{ADDED}"),
    # the user's own choices stand
    ("mongodb://localhost:27017/monq?retryWrites=true",
     "mongodb://localhost:27017/monq?retryWrites=true&maxPoolSize=1"),
    ("mongodb://localhost:27017/?retrywrites=false&maxpoolsize=4",
     "mongodb://localhost:27017/?retrywrites=false&maxpoolsize=4"),
])
def test_client_url(url: str, expected: str) -> None:
    assert client_url(url) == expected


def test_the_option_survives_naming_a_database() -> None:
    url = with_database(client_url("mongodb://127.0.0.1:27017/"), "jobs")
    assert url == f"mongodb://127.0.0.1:27017/jobs?{ADDED}"
    assert database_name(url) == "jobs"


def test_clients_of_the_embedded_server_send_no_retryable_writes(mongo_server_url: str) -> None:
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(mongo_server_url)
    try:
        assert client.options.retry_writes is False
    finally:
        client.close()


async def test_a_waiting_change_stream_stalls_no_other_command(store: Store) -> None:
    """On the embedded server a process has one connection for its commands; a
    worker's change stream waits in its ``getMore`` for up to 10 s, and must not
    hold that connection meanwhile: its commands still answer at once."""
    if store.client.options.pool_options.max_pool_size != 1:
        pytest.skip("a server other than the embedded one: the driver's own pool")
    if not await store.supports_change_streams():
        pytest.skip("no change streams")
    workers = WorkerStore(store)
    async with workers.queue_changes() as stream:
        waiting = asyncio.create_task(stream.try_next())  # the server waits for a change
        await asyncio.sleep(0.3)
        try:
            began = time.monotonic()
            await store.collection("elsewhere").insert_one({"x": 1})
            assert await store.collection("elsewhere").count_documents({}) == 1
            took_s = time.monotonic() - began
        finally:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await waiting
    assert took_s < WATCH_AWAIT_MS / 1000 / 2, took_s
