"""The event websocket under attack, over real sockets (issue #17, findings 5 and 7):
revoked read access reaches every channel, masked events name nobody, an interest
cannot cost thousands of look-ups, and unknown channels are named, not silently
accepted. After each, the node still serves /health."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pymongo import monitoring

from monq.core.config import Config
from monq.core.store import Store
from monq.core.store.events import EventStore, new_event
from monq.queue.queue import Queue
from tests.api_fixtures import ApiClient
from tests.ws_client import EventClient

pytestmark = pytest.mark.usefixtures("close_ws_clients")

JOB = "monq.jobs.example.DummyJob"
MASKED_FIELDS = {"_id", "number", "name", "state", "progress", "priority", "attempts_left"}


async def still_serving(api: ApiClient) -> None:
    assert (await api.call("GET", "/health")).code == 200


async def notify(store: Store, job_id: Any, text: str) -> None:
    """What the notifier writes for a websocket notification of a job."""
    await EventStore(store).insert([new_event(
        "notification", channel=f"job:{job_id}", author="notifier",
        data={"_id": job_id, "number": 1, "name": JOB, "transition": "complete",
              "message": text})])


async def set_permissions(api: ApiClient, name: str, perms: list[str]) -> None:
    admin = await api.admin()
    record = (await api.call("GET", "/roles", token=admin, query={"name": name})).data[0]
    reply = await api.call("PUT", f"/roles/{record['_id']}", token=admin,
                           json_body={"etag": record["etag"], "perm": perms})
    assert reply.code == 200, reply.body


async def test_removing_read_access_masks_an_open_job_channel(
        api: ApiClient, config: Config, store: Store) -> None:
    queue = Queue(store, config)
    job = await queue.enqueue(JOB)
    client = await EventClient.connect(api.base_url, await api.user(
        "watcher", perms=[f"job://{JOB}/r"]))
    assert (await client.interest(f"job:{job.id}"))["data"] == [f"job:{job.id}"]
    await notify(store, job.id, "before")
    before = await client.next(lambda m: m.get("name") == "notification")
    assert before["data"]["message"] == "before" and before["data"]["name"] == JOB

    await set_permissions(api, "watcher", [])
    deadline = time.monotonic() + 20  # the hub re-reads permissions every 5 s
    n = 0
    while True:
        n += 1
        await notify(store, job.id, f"after {n}")
        seen = await client.next(lambda m: m.get("name") == "notification")
        if seen["data"]["name"] != JOB:
            break
        assert time.monotonic() < deadline, "the revoked permission never applied"
    assert seen["author"] is None and set(seen["data"]) <= MASKED_FIELDS
    assert seen["data"]["name"] == "UnauthorizedJob" and "message" not in seen["data"]
    await queue.hold(job.id)  # the job's queue events on the same channel: masked too
    held = await client.next(lambda m: m.get("name") == "hold_job")
    assert held["data"]["name"] == "UnauthorizedJob" and held["author"] is None
    assert set(held["data"]) <= MASKED_FIELDS
    await still_serving(api)


async def test_masked_events_do_not_carry_their_author(api: ApiClient) -> None:
    admin = await api.admin()
    blind = await EventClient.connect(api.base_url, await api.user("blind"))
    seer = await EventClient.connect(api.base_url, admin)
    for client in (blind, seer):
        await client.interest("queue")
    enqueued = await api.call("POST", "/jobs", token=admin, json_body={"name": JOB})
    assert enqueued.code in (200, 201), enqueued.body
    job_id = enqueued.data["_id"]

    def about(m: dict[str, Any]) -> bool:
        return m.get("name") == "enqueue_job" and m["data"]["_id"] == job_id

    assert (await seer.next(about))["author"] == "admin"
    masked = await blind.next(about)
    assert masked["author"] is None and masked["data"]["name"] == "UnauthorizedJob"
    await still_serving(api)


class FindSpy(monitoring.CommandListener):
    """Counts find commands on the job collections."""

    def __init__(self) -> None:
        self.finds = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") in (
                "sys.queue", "sys.journal"):
            self.finds += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_an_interest_is_capped_deduplicated_and_costs_one_lookup(
        server_with: Callable[..., Any], config: Config) -> None:
    spy = FindSpy()
    api, store = await server_with({"event_listeners": [spy]}, ws_max_interests=100)
    queue = Queue(store, config)
    jobs = [await queue.enqueue(JOB) for _ in range(30)]
    client = await EventClient.connect(api.base_url, await api.admin())
    assert (await client.interest("message"))["data"] == ["message"]

    flood = [f"job:{n:024x}" for n in range(2000)]  # a 64 KB message of job channels
    refusal = await client.interest(*flood)
    assert refusal == {"type": "error", "message": "interest: at most 100 channels in one "
                       "interest (api.ws_max_interests), got 2000"}
    assert spy.finds == 0  # refused before any look-up
    await EventStore(store).insert([new_event("message", channel="message", author="t",
                                              data={"text": "still subscribed"})])
    assert (await client.next(lambda m: m.get("name") == "message"))["data"]["text"] \
        == "still subscribed"  # the refused interest changed nothing

    channels = [f"job:{j.id}" for j in jobs]
    reply = await client.interest(*(channels * 60), "queue", "queue")  # 1,802 names, 31 distinct
    assert reply["data"] == sorted([*channels, "queue"]) and "unknown" not in reply
    assert spy.finds <= 2  # one query per job collection for all 30 ids
    await queue.hold(jobs[0].id)
    held = await client.next(lambda m: m.get("name") == "hold_job")
    assert held["data"]["_id"] == str(jobs[0].id)
    await still_serving(api)
    api.http.close()


async def test_unknown_channels_are_named_in_the_reply_and_not_subscribed(
        api: ApiClient, store: Store) -> None:
    client = await EventClient.connect(api.base_url, await api.user("newcomer"))
    reply = await client.interest("queue", "jobs", "message", "summary",
                                  f"job:{'0' * 24}")
    assert reply["data"] == ["message", "queue"]
    assert reply["unknown"] == ["jobs", "summary", f"job:{'0' * 24}"]
    assert "unknown channels, not subscribed" in reply["message"]
    assert await client.interest("queue", "job:42") == {
        "type": "error", "message": "interest: invalid channel 'job:42': a job's channel is "
        "job:<its _id, 24 hex digits>"}
    await EventStore(store).insert([
        new_event("message", channel="jobs", author="t", data={"text": "not for you"}),
        new_event("message", channel="message", author="t", data={"text": "for you"})])
    first = await client.next(lambda m: "channel" in m)
    assert first["channel"] == "message" and first["data"]["text"] == "for you"
    poster = await EventClient.connect(api.base_url, await api.user(
        "poster", perms=["api://monq.api.events.message/c"]))
    await poster.send({"type": "message", "channel": "jobs", "text": "hello?"})
    assert (await poster.next())["message"] == (
        "message: unknown channel 'jobs': the chat channels are ['message'] "
        "(api.chat_channels)")
    assert await EventStore(store).count("message") == 2  # the refused post wrote nothing
    await still_serving(api)
