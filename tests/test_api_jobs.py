"""Jobs, job types, workers and maintenance over HTTP, with permissions."""

import asyncio

from monq.core.config import Config
from monq.core.store import Store
from monq.queue.queue import Queue, WorkerRef
from tests.api_fixtures import ApiClient

DUMMY = "monq.jobs.example.DummyJob"
FAILING = "monq.jobs.example.FailingJob"
READ = ["api://monq.api.jobs", "api://monq.api.jobs.log", "api://monq.api.jobtypes"]
ACT = [*READ, "api://monq.api.jobs.action"]


async def test_enqueue_get_and_list(api: ApiClient) -> None:
    admin = await api.admin()
    created = await api.call("POST", "/jobs", token=admin, json_body={
        "name": DUMMY, "args": {"sleep": 1}, "priority": 3, "hold": True})
    assert created.code == 200
    job = created.data
    assert job["priority"] == 3 and job["held"] and job["enqueued"]["by"] == "admin"
    assert job["enqueued"]["origin"] == "api"
    by_id = await api.call("GET", f"/jobs/{job['_id']}", token=admin)
    by_number = await api.call("GET", f"/jobs/{job['number']}", token=admin)
    assert by_id.data["_id"] == by_number.data["_id"] == job["_id"]
    for i in range(4):
        await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY,
                                                                "args": {"sleep": i}})
    page = await api.call("GET", "/jobs", token=admin, query={
        "per_page": 2, "page": 1, "sort": "number", "descending": "true"})
    assert page.body["total_count"] == 5 and page.body["page_count"] == 3
    assert [j["number"] for j in page.data] == [3, 2]
    held = await api.call("GET", "/jobs", token=admin, query={"name": "*.DummyJob",
                                                              "number": 1})
    assert [j["number"] for j in held.data] == [1]
    events = await api.call("GET", f"/jobs/{job['number']}/events", token=admin)
    assert [e["name"] for e in events.data] == ["enqueue_job"]


async def test_bad_input(api: ApiClient) -> None:
    admin = await api.admin()
    unknown = await api.call("POST", "/jobs", token=admin,
                             json_body={"name": "monq.jobs.no.Job"})
    assert unknown.code == 400 and "unknown job type" in unknown.body["message"]
    bad_arg = await api.call("POST", "/jobs", token=admin, json_body={
        "name": "monq.jobs.example.ArgsJob", "args": {"name": 1}})
    assert bad_arg.code == 400
    assert bad_arg.body["message"] == "argument 'name': expected a string, got 1"
    bad_option = await api.call("POST", "/jobs", token=admin, json_body={
        "name": DUMMY, "prio": 1})
    assert bad_option.code == 400 and bad_option.body["message"] == "prio: unknown field 'prio'"
    injected = await api.call("POST", "/jobs", token=admin, json_body={
        "name": DUMMY, "args": {"$where": "1"}})
    assert injected.code == 400
    for query in ({"state": "sleeping"}, {"sort": "$natural"}, {"enqueued_after": "today"},
                  {"page": "-1"}, {"number": "one"}):
        reply = await api.call("GET", "/jobs", token=admin, query=query)
        assert reply.code == 400, query
    assert (await api.call("GET", "/jobs/nonsense", token=admin)).code == 404
    assert (await api.call("GET", "/jobs/999", token=admin)).code == 404


async def test_refused_transition_is_409_naming_the_state(api: ApiClient) -> None:
    admin = await api.admin()
    job = (await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY})).data
    assert (await api.call("POST", f"/jobs/{job['_id']}/hold", token=admin)).code == 200
    again = await api.call("POST", f"/jobs/{job['_id']}/hold", token=admin)
    assert again.code == 409
    assert again.body["message"] == "cannot hold job #1: it is pending and held already"
    killed = await api.call("POST", f"/jobs/{job['_id']}/kill", token=admin)
    assert killed.code == 200 and killed.data["state"] == "killed"
    restarted = await api.call("POST", f"/jobs/{job['_id']}/restart", token=admin)
    assert restarted.code == 200 and restarted.data["parent_id"] == job["_id"]
    removed = await api.call("POST", f"/jobs/{job['_id']}/remove", token=admin)
    assert removed.code == 409 and "it is killed" in removed.body["message"]


async def test_invisible_jobs_are_404_and_never_counted(api: ApiClient) -> None:
    admin = await api.admin()
    mine = (await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY})).data
    secret = (await api.call("POST", "/jobs", token=admin, json_body={"name": FAILING})).data
    token = await api.user("reader", perms=[*READ, "job://monq.jobs.example.Dummy*/r"])
    listing = await api.call("GET", "/jobs", token=token)
    assert listing.body["total_count"] == 1 and listing.data[0]["_id"] == mine["_id"]
    assert (await api.call("GET", f"/jobs/{secret['_id']}", token=token)).code == 404
    assert (await api.call("GET", f"/jobs/{secret['number']}/log", token=token)).code == 404
    kill = await api.call("POST", f"/jobs/{secret['_id']}/kill", token=token)
    assert kill.code in (403, 404)
    read_only = await api.call("POST", f"/jobs/{mine['_id']}/kill", token=token)
    assert read_only.code == 403  # no api permission for actions at all
    none = await api.user("nobody", perms=READ)
    assert (await api.call("GET", "/jobs", token=none)).body["total_count"] == 0


async def test_acting_needs_x(api: ApiClient) -> None:
    admin = await api.admin()
    job = (await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY})).data
    reader = await api.user("r", perms=[*ACT, "job://monq.jobs.example.*/r"])
    denied = await api.call("POST", f"/jobs/{job['_id']}/kill", token=reader)
    assert denied.code == 403
    assert denied.body["message"] == f"permission denied: job://{DUMMY}/x"
    assert (await api.call("POST", "/jobs", token=reader,
                           json_body={"name": DUMMY})).code == 403
    runner = await api.user("x", perms=[*ACT, "job://monq.jobs.example.*/x"])
    assert (await api.call("POST", f"/jobs/{job['_id']}/kill", token=runner)).code == 200
    assert (await api.call("POST", "/jobs", token=runner,
                           json_body={"name": DUMMY})).code == 200
    standard = await api.user("s")
    assert (await api.call("GET", "/jobs", token=standard)).code == 403


async def test_log_pages_and_follow_until_the_job_ends(api: ApiClient, store: Store,
                                                       config: Config) -> None:
    admin = await api.admin()
    job = (await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY})).data
    queue = Queue(store, config)
    claim = await queue.claim(WorkerRef("w", "h", 1))
    assert claim is not None
    await queue.append_logs(claim.job.id, [{"created": claim.job.enqueued["at"],
                                            "level": "INFO", "message": f"line {i}",
                                            "extra": {}} for i in range(3)])
    page = await api.call("GET", f"/jobs/{job['_id']}/log", token=admin,
                          query={"per_page": 2, "page": 1})
    assert page.body["total_count"] == 3 and [ln["message"] for ln in page.data] == ["line 2"]

    chunks: list[bytes] = []
    following = asyncio.Event()

    def received(chunk: bytes) -> None:
        chunks.append(chunk)
        following.set()

    async def finish_once_followed() -> None:
        await asyncio.wait_for(following.wait(), 30)  # the stream is open: end it now
        await queue.append_logs(claim.job.id, [{"created": claim.job.enqueued["at"],
                                                "level": "INFO", "message": "last",
                                                "extra": {}}])
        await queue.complete(claim.job.id, claim.token)

    task = asyncio.create_task(finish_once_followed())
    reply = await api.http.fetch(f"{api.base_url}/api/v1/jobs/{job['_id']}/log?follow=true",
                                 headers={"Authorization": f"Bearer {admin}"},
                                 streaming_callback=received, request_timeout=30)
    await task
    assert reply.code == 200
    text = b"".join(chunks).decode()
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert text.count("data: {") == 5  # four lines, then the end
    assert '"message": "last"' in text
    assert text.rstrip().endswith('event: end\ndata: {"state": "complete"}')


async def test_jobtypes_workers_and_maintenance(api: ApiClient, store: Store) -> None:
    admin = await api.admin()
    types = await api.call("GET", "/jobtypes", token=admin)
    args_job = next(t for t in types.data if t["name"] == "monq.jobs.example.ArgsJob")
    assert args_job["params"]["name"] == {"type": "str", "required": True, "default": None,
                                          "description": "who", "choices": []}
    assert args_job["defaults"]["attempts"] == 1
    limited = await api.user("limited", perms=[*READ, "job://monq.jobs.example.Dummy*/r"])
    names = [t["name"] for t in (await api.call("GET", "/jobtypes", token=limited)).data]
    assert names == ["monq.jobs.example.DummyJob"]
    from datetime import UTC, datetime

    from monq.core.store.workers import WorkerStore
    await WorkerStore(store).register({"_id": "w1", "host": "h", "pid": 1, "pool": "default",
                                       "concurrency": 2, "tags": [],
                                       "started_at": datetime.now(UTC),
                                       "heartbeat": datetime.now(UTC), "jobs": []})
    workers = await api.call("GET", "/workers", token=admin)
    assert workers.data[0]["_id"] == "w1" and workers.data[0]["alive"]
    assert (await api.call("GET", "/workers", token=limited)).code == 403
    on = await api.call("POST", "/maintenance", token=admin)
    assert on.data == {"global": True, "names": []}
    named = await api.call("POST", "/maintenance", token=admin, query={"name": DUMMY})
    assert named.data["names"] == [DUMMY]
    off = await api.call("DELETE", "/maintenance", token=admin)
    assert off.data["global"] is False
    assert (await api.call("POST", "/maintenance", token=limited)).code == 403
