"""WS /api/v1/event and GET /api/v1/event/history over real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import monitoring

from monq.core.config import Config
from monq.core.store import Store
from monq.core.store.events import EventStore, new_event
from monq.history.daemon import Summarizer
from monq.queue.queue import Queue
from tests.api_fixtures import ApiClient
from tests.conftest import ROOT
from tests.helpers import run_monq
from tests.ws_client import EventClient, StalledClient, refused

pytestmark = pytest.mark.usefixtures("close_ws_clients")

LIFE = ["enqueue_job", "request_start_job", "start_job", "complete_job"]
JOB = "monq.jobs.example.DummyJob"


def for_job(events: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("channel") == "queue" and e["data"].get("_id") == job_id]


@pytest.mark.slow
async def test_the_core4_walkthrough_masks_what_a_user_may_not_read(
        api: ApiClient, config: Config, store: Store, monq_env: dict[str, str],
        start_worker: Callable[..., Any]) -> None:
    user = await EventClient.connect(api.base_url, await api.user("walker"))
    admin = await EventClient.connect(api.base_url, await api.admin())
    assert (await user.interest("queue"))["message"] == "processed interest in ['queue']"
    await admin.interest("queue")
    stop = asyncio.Event()
    summarizer = asyncio.create_task(Summarizer(store, config).run(stop))
    try:
        enqueued = run_monq("enqueue", JOB, "sleep=0.5", "--json",
                            env={**monq_env, "PYTHONPATH": str(ROOT)})
        assert enqueued.returncode == 0, enqueued.stderr
        job = json.loads(enqueued.stdout)
        start_worker()

        def completed(m: dict[str, Any]) -> bool:
            return m.get("name") == "complete_job" and m["data"]["_id"] == job["_id"]

        seen_by_user = await user.events_until(completed)
        seen_by_admin = await admin.events_until(completed)
        summaries = [await c.next(lambda m: m.get("name") == "summary") for c in (user, admin)]
    finally:
        stop.set()
        await summarizer
    mine = for_job(seen_by_user, job["_id"])
    assert [e["name"] for e in mine if e["name"] in LIFE] == LIFE
    assert {e["data"]["name"] for e in mine} == {"UnauthorizedJob"}
    assert all(set(e["data"]) <= {"_id", "number", "name", "state", "progress", "priority",
                                  "attempts_left"} for e in mine)
    theirs = for_job(seen_by_admin, job["_id"])
    assert [e["name"] for e in theirs if e["name"] in LIFE] == LIFE
    assert {e["data"]["name"] for e in theirs} == {JOB}
    assert [e["_id"] for e in mine] == [e["_id"] for e in theirs]
    user_rows, admin_rows = (s["data"]["jobs"] for s in summaries)
    assert {r["name"] for r in user_rows} <= {"UnauthorizedJob"}
    assert {r["name"] for r in admin_rows} <= {JOB}
    assert user_rows or admin_rows or summaries[0]["data"]["total"] == 0


async def test_a_job_channel_carries_that_job_and_needs_read_access(
        api: ApiClient, config: Config, store: Store) -> None:
    queue = Queue(store, config)
    mine = await queue.enqueue(JOB)
    other = await queue.enqueue(JOB)
    reader = await EventClient.connect(api.base_url, await api.user(
        "reader", perms=["job://monq.jobs.example.*/r"]))
    blind = await EventClient.connect(api.base_url, await api.user("blind"))
    reply = await reader.interest(f"job:{mine.id}")
    assert reply["type"] == "interest"
    refusal = await blind.interest(f"job:{mine.id}")
    assert refusal["data"] == [] and refusal["unknown"] == [f"job:{mine.id}"]  # as if missing
    await queue.hold(other.id)
    await queue.hold(mine.id)
    await EventStore(store).insert([new_event("notification", channel=f"job:{mine.id}",
                                              author="notifier", data={
                                                  "_id": mine.id, "name": JOB,
                                                  "message": "hello"})])
    held = await reader.next(lambda m: m.get("name") == "hold_job")
    assert held["data"]["_id"] == str(mine.id) and held["data"]["name"] == JOB
    note = await reader.next(lambda m: m.get("name") == "notification")
    assert note["data"]["message"] == "hello"
    assert all(m["data"].get("_id") != str(other.id) for m in reader.received if "channel" in m)


async def test_reconnecting_with_since_replays_without_gap_or_duplicate(
        api: ApiClient, config: Config, store: Store) -> None:
    queue = Queue(store, config)
    token = await api.admin()
    first = await EventClient.connect(api.base_url, token)
    await first.interest("queue")
    await queue.enqueue(JOB)
    last = await first.next(lambda m: m.get("name") == "enqueue_job")
    missed = [await queue.enqueue(JOB) for _ in range(5)]  # while disconnected
    again = await EventClient.connect(api.base_url, token)
    writer = asyncio.create_task(_enqueue_slowly(queue, 10))  # while it replays and after
    await again.interest("queue", since=last["_id"])
    await writer
    await again.next(lambda m: m["data"]["_id"] == str(writer.result()[-1].id)
                     if m.get("name") == "enqueue_job" else False)
    # events arrive in order: anything sent twice would arrive before this last one
    sentinel = await queue.enqueue(JOB)
    await again.next(lambda m: m.get("name") == "enqueue_job"
                     and m["data"]["_id"] == str(sentinel.id))
    got = [m["_id"] for m in again.received if m.get("name") == "enqueue_job"]
    stored = [str(e["_id"]) for e in await EventStore(store).replay(
        ObjectId(last["_id"]), ["queue"], [], 1000)]
    assert got == stored  # every event after `since`, once, in order
    assert len(got) == len(missed) + 10 + 1


async def _enqueue_slowly(queue: Queue, n: int) -> list[Any]:
    jobs = []
    for _ in range(n):
        jobs.append(await queue.enqueue(JOB))
        await asyncio.sleep(0.01)
    return jobs


class CursorSpy(monitoring.CommandListener):
    """Remembers the cursor ids of change streams (for killing them)."""

    def __init__(self) -> None:
        self.requests: set[int] = set()
        self.cursors: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "aggregate" and "$changeStream" in str(
                event.command.get("pipeline")):
            self.requests.add(event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self.requests:
            self.cursors.append(event.reply["cursor"]["id"])

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def listening_to_messages(server_with: Callable[..., Any],
                                 store_options: dict[str, Any] | None = None, **api_config: Any
                                 ) -> tuple[ApiClient, Store, EventClient]:
    """A server whose hub follows sys.event as `api_config` says, and an admin client
    subscribed to the `message` channel."""
    api, store = await server_with(store_options, **api_config)
    hub = api.server.hub
    assert hub is not None
    await asyncio.wait_for(hub.ready.wait(), 10)
    assert hub.mode == api_config["event_source"]
    client = await EventClient.connect(api.base_url, await api.admin())
    await client.interest("message")
    return api, store, client


async def test_the_change_stream_resumes_after_the_server_drops_its_cursor(
        server_with: Callable[..., Any], config: Config) -> None:
    spy = CursorSpy()
    api, store, client = await listening_to_messages(
        server_with, {"event_listeners": [spy]}, event_source="change_stream")
    events = EventStore(store)
    for round_ in range(3):
        batch = [new_event("message", channel="message", author="t", data={"n": round_ * 10 + i})
                 for i in range(10)]
        await events.insert(batch)
        for cursor in spy.cursors:  # the server drops every cursor the hub's client opened
            await store.db.command("killCursors", "sys.event", cursors=[cursor])
    await client.next(lambda m: m.get("data", {}).get("n") == 29)
    got = [m["data"]["n"] for m in client.received if m.get("name") == "message"]
    assert got == list(range(30))
    api.http.close()


class RescanSpy(monitoring.CommandListener):
    """Counts the polls of sys.event that re-read the window below a ``seq`` stamp
    (rescans: readers follow the stamp taken at insertion, not the writer's id)."""

    def __init__(self) -> None:
        self.lows: list[ObjectId] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "sys.event":
            low = (event.command.get("filter") or {}).get("seq", {}).get("$gt")
            if isinstance(low, ObjectId):
                self.lows.append(low)

    def rescans_below(self, oid: ObjectId) -> int:
        return sum(1 for low in self.lows if low < oid)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_the_polling_fallback_misses_no_late_event_and_sends_none_twice(
        server_with: Callable[..., Any]) -> None:
    spy = RescanSpy()
    api, store, client = await listening_to_messages(
        server_with, {"event_listeners": [spy]}, event_source="poll", event_poll_s=0.05)
    events = EventStore(store)
    await events.insert([new_event("message", channel="message", author="t", data={"n": 1})])
    await client.next(lambda m: m.get("data", {}).get("n") == 1)
    # written late by a slow process: its id (its writer's clock) is older than the last seen
    late = new_event("message", channel="message", author="t", data={"n": 2})
    late["_id"] = ObjectId.from_datetime(datetime.now(UTC) - timedelta(seconds=2))
    await events.insert([late])
    await client.next(lambda m: m.get("data", {}).get("n") == 2, timeout_s=5)
    late_seq = (await events.by_ids([late["_id"]]))[0]["seq"]
    rescans = spy.rescans_below(late_seq)
    async with asyncio.timeout(30):  # two more rescans of the window, which holds `late`
        while spy.rescans_below(late_seq) < rescans + 2:
            await asyncio.sleep(0.05)
    await events.insert([new_event("message", channel="message", author="t", data={"n": 3})])
    await client.next(lambda m: m.get("data", {}).get("n") == 3)
    got = [m["data"]["n"] for m in client.received if m.get("name") == "message"]
    assert got == [1, 2, 3]
    api.http.close()


async def test_a_slow_client_is_disconnected_and_never_slows_the_others(
        server_with: Callable[..., Any]) -> None:
    api, store = await server_with(ws_send_queue=400)
    token = await api.admin()
    stalled = await StalledClient.connect(api.base_url, token, ["message"])
    fast = await EventClient.connect(api.base_url, token)
    await fast.interest("message")
    hub = api.server.hub
    text = "x" * 10_000
    total = 1500  # 15 MB: more than the server's socket buffer and the queue hold
    closing: asyncio.Task[tuple[int, int]] | None = None
    for start in range(0, total, 50):
        await EventStore(store).insert([
            new_event("message", channel="message", author="t", data={"n": n, "text": text})
            for n in range(start, start + 50)])
        # the fast client keeps up (paced by what it has read, so a loaded machine
        # cannot make it the slow one) while the stalled one falls ever further behind
        await fast.next(lambda m, last=start + 49: m.get("data", {}).get("n") == last,
                        timeout_s=60)
        if closing is None and len(hub.subscribers) == 1:
            # the server has dropped the stalled client: it now reads its backlog up to
            # the close frame (tornado waits 5 s for a closing client, then cuts it off,
            # which on a loaded machine came before the pacing loop here had ended)
            closing = asyncio.create_task(stalled.close_code())
    assert [m["data"]["n"] for m in fast.received if m.get("name") == "message"] \
        == list(range(total))
    assert closing is not None, "the stalled client was never disconnected"
    code, frames = await closing
    assert code == 4008 and frames < total
    api.http.close()


async def test_the_handshake_needs_a_token_and_an_allowed_origin(
        server_with: Callable[..., Any]) -> None:
    api, _ = await server_with(origins=["https://dash.example.com"])
    token = await api.admin()
    assert await refused(api.base_url, None) == 401
    assert await refused(api.base_url, "not-a-token") == 401
    assert await refused(api.base_url, token, origin="https://evil.example.com") == 403
    for origin in ("https://dash.example.com", api.base_url):
        client = await EventClient.connect(api.base_url, token, origin=origin)
        assert (await client.interest("queue"))["type"] == "interest"
        client.close()
    no_socket = await api.user("nosocket", roles=[], perms=["api://monq.api.auth.profile"])
    assert await refused(api.base_url, no_socket) == 403
    api.http.close()


@pytest.mark.parametrize("revoke", ["logout", "deactivate", "password"])
async def test_revoking_a_user_closes_their_sockets(
        api: ApiClient, revoke: str) -> None:
    token = await api.user("leaving")
    client = await EventClient.connect(api.base_url, token)
    await client.interest("queue")
    admin = await api.admin()
    if revoke == "logout":
        assert (await api.call("POST", "/logout", token=token)).code == 200
    else:
        record = (await api.call("GET", "/roles", token=admin, query={"name": "leaving"})
                  ).data[0]
        change = {"is_active": False} if revoke == "deactivate" else {
            "password": "another-password-2"}
        reply = await api.call("PUT", f"/roles/{record['_id']}", token=admin,
                               json_body={"etag": record["etag"], **change})
        assert reply.code == 200, reply.body
    # the hub checks token versions twice a second; the bound here is for a loaded
    # machine, not the promise (speed is for scripts, not tests)
    code, reason = await client.closed(timeout_s=15)
    assert code == 4001 and reason == "token revoked"


async def test_bad_messages_get_an_error_and_the_socket_stays_open(api: ApiClient) -> None:
    client = await EventClient.connect(api.base_url, await api.user("clumsy"))
    cases: list[tuple[Any, str]] = [
        ("not json", "messages must be JSON objects"),
        ([1, 2], "messages must be JSON objects"),
        ({"type": "shout"}, "unknown message type 'shout': use interest or message"),
        ({"type": "interest", "data": "queue"},
         "interest: 'data' must be a list of channel names"),
        ({"type": "interest", "data": ["queue"], "since": "yesterday"},
         "interest: 'since' is not an event id: 'yesterday'"),
        ({"type": "interest", "data": ["$where"]}, "interest: invalid channel '$where'"),
        ({"type": "message", "channel": "message", "text": "hi"},
         "message: permission denied: api://monq.api.events.message/c"),
    ]
    for message, error in cases:
        await client.conn.write_message(message if isinstance(message, str)
                                        else json.dumps(message))
        assert await client.next() == {"type": "error", "message": error}
    assert (await client.interest("queue"))["type"] == "interest"


async def test_messages_reach_the_channel_and_nobody_posts_into_queue(
        api: ApiClient, store: Store) -> None:
    poster = await EventClient.connect(api.base_url, await api.user(
        "poster", perms=["api://monq.api.events.message/c"]))
    listener = await EventClient.connect(api.base_url, await api.user("listener"))
    await listener.interest("message")
    for channel in ("queue", "system"):
        await poster.send({"type": "message", "channel": channel, "text": "fake"})
        assert (await poster.next())["message"] == f"message: cannot post into channel " \
                                                   f"{channel!r}"
    await poster.send({"type": "message", "channel": "message", "text": "hello all"})
    got = await listener.next(lambda m: m.get("name") == "message")
    assert got["author"] == "poster" and got["data"] == {"text": "hello all"}
    assert await EventStore(store).count("message") == 1


async def test_event_history_pages_by_channel_and_masks(api: ApiClient, config: Config,
                                                        store: Store) -> None:
    queue = Queue(store, config)
    jobs = [await queue.enqueue(JOB) for _ in range(3)]
    await EventStore(store).insert([new_event("message", channel="message", author="a",
                                              data={"text": f"m{i}"}) for i in range(4)])
    token = await api.user("historian")
    page = await api.call("GET", "/event/history", token=token,
                          query={"channel": "queue", "per_page": 2})
    assert page.code == 200 and page.body["total_count"] == 3 and page.body["count"] == 2
    assert page.body["page_count"] == 2
    assert [e["data"]["name"] for e in page.data] == ["UnauthorizedJob"] * 2
    assert page.data[0]["data"]["_id"] == str(jobs[-1].id)  # newest first
    oldest = await api.call("GET", "/event/history", token=token,
                            query={"channel": "message", "sort": 1})
    assert [e["data"]["text"] for e in oldest.data] == ["m0", "m1", "m2", "m3"]
    admin = await api.admin()
    one = await api.call("GET", "/event/history", token=admin,
                         query={"channel": f"job:{jobs[0].id}"})
    assert [e["name"] for e in one.data] == ["enqueue_job"] and one.data[0]["data"]["name"] == JOB
    hidden = await api.call("GET", "/event/history", token=token,
                            query={"channel": f"job:{jobs[0].id}"})
    assert hidden.code == 404
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    empty = await api.call("GET", "/event/history", token=token,
                           query={"channel": "queue", "start": future})
    assert empty.body["total_count"] == 0
    for query, message in (({"channel": "a b"}, "parameter 'channel': invalid channel 'a b'"),
                           ({"channel": "queue", "start": future,
                             "end": datetime.now(UTC).isoformat()},
                            "parameter 'end': before 'start'")):
        bad = await api.call("GET", "/event/history", token=token, query=query)
        assert (bad.code, bad.body["message"]) == (400, message)


async def test_a_user_given_read_access_sees_names_without_reconnecting(
        api: ApiClient, config: Config, store: Store) -> None:
    client = await EventClient.connect(api.base_url, await api.user("promoted"))
    await client.interest("queue")
    queue = Queue(store, config)
    await queue.enqueue(JOB)
    first = await client.next(lambda m: m.get("name") == "enqueue_job")
    assert first["data"]["name"] == "UnauthorizedJob"
    admin = await api.admin()
    record = (await api.call("GET", "/roles", token=admin, query={"name": "promoted"})).data[0]
    granted = await api.call("PUT", f"/roles/{record['_id']}", token=admin, json_body={
        "etag": record["etag"], "perm": [f"job://{JOB}/r"]})
    assert granted.code == 200, granted.body
    deadline = time.monotonic() + 10  # permissions are re-read every 5 s
    while True:
        job = await queue.enqueue(JOB)
        seen = await client.next(lambda m, j=job: m.get("data", {}).get("_id") == str(j.id))
        if seen["data"]["name"] == JOB:
            break
        assert time.monotonic() < deadline, "the new permission never applied"
        await asyncio.sleep(0.5)
