"""The event fan-out over real sockets: bursts, overlapping channels and mixed views
reach every client whole, once each, as each may see them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bson import ObjectId

from monq.core.config import Config
from monq.core.store import Store
from monq.core.store.events import EventStore, new_event
from monq.queue.queue import Queue
from tests.api_fixtures import ApiClient
from tests.ws_client import EventClient

pytestmark = pytest.mark.usefixtures("close_ws_clients")

JOB = "monq.jobs.example.DummyJob"


def queue_event(n: int) -> dict[str, Any]:
    return new_event("enqueue_job", channel="queue", author="admin", data={
        "_id": ObjectId(), "number": n, "name": JOB, "state": "pending", "args": {"n": n}})


async def test_a_burst_larger_than_the_send_queue_reaches_clients_that_read(
        server_with: Callable[..., Any]) -> None:
    # The poll reads up to 10,000 events at once and hands them over in one go: a
    # client that reads along is not "too far behind" because the burst is big.
    api, store = await server_with(event_source="poll", ws_send_queue=100)
    admin = await api.admin()
    viewer = await api.user("viewer")
    clients = [await EventClient.connect(api.base_url, admin if i % 2 else viewer)
               for i in range(6)]
    for client in clients:
        await client.interest("queue")
    burst = [queue_event(n) for n in range(1500)]
    await EventStore(store).insert(burst)
    last = str(burst[-1]["_id"])
    for i, client in enumerate(clients):
        got = await client.events_until(lambda m: m.get("_id") == last, timeout_s=60)
        assert [m["_id"] for m in got] == [str(e["_id"]) for e in burst]  # all, once, in order
        names = {m["data"]["name"] for m in got}
        assert names == ({JOB} if i % 2 else {"UnauthorizedJob"})
    assert (await api.call("GET", "/health")).code == 200
    api.http.close()


async def test_a_job_on_two_subscribed_channels_arrives_once(
        api: ApiClient, config: Config, store: Store) -> None:
    queue = Queue(store, config)
    job = await queue.enqueue(JOB)
    client = await EventClient.connect(api.base_url, await api.admin())
    reply = await client.interest("queue", f"job:{job.id}")
    assert reply["data"] == sorted(["queue", f"job:{job.id}"])
    await queue.hold(job.id)
    await queue.resume(job.id)
    marker = new_event("message", channel="message", author="t", data={"text": "end"})
    await client.interest("queue", f"job:{job.id}", "message")
    await EventStore(store).insert([marker])
    await client.next(lambda m: m.get("_id") == str(marker["_id"]))
    names = [m["name"] for m in client.received if m.get("channel") == "queue"]
    assert names.count("hold_job") == 1 and names.count("resume_job") == 1
