"""Finding 1 of issue #17, import before authorisation: a job name from a client is
checked against the user's job:// permissions and the deployment's allowed job
types (queue.job_types) before anything is imported, on every route that takes
one. Over real sockets against a real server; the server runs in this process, so
``sys.modules`` shows what it imported."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from monq.core.config import Config
from monq.core.store import Store
from tests.api_fixtures import ApiClient
from tests.security_fixtures import forget_marker, healthy, marker_imported, served

MARKED = "tests.import_marker.Marked"
DUMMY = "monq.jobs.example.DummyJob"
HOSTILE = ["monq.__main__.X", "this.X", "os.system", "antigravity.X", "monq.cli.up.X",
           "tests._private.X", "__main__.X", ".relative.X", "cop\n.X",
           "tests..jobtypes.X", "tests.jobtypes.Quick\n", "a" * 300 + ".X"]


@pytest.fixture
async def narrowed(config: Config, store: Store) -> AsyncIterator[ApiClient]:
    """A server that allows only the shipped and the tests' job types."""
    async for client in served(config, store,
                               queue={"job_types": ["monq.jobs.*", "tests.jobtypes.*"]}):
        yield client


@pytest.fixture(autouse=True)
def fresh_marker() -> None:
    forget_marker()


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_names_are_refused_before_import_even_for_the_admin(
        api: ApiClient, name: str) -> None:
    admin = await api.admin()
    reply = await api.call("POST", "/jobs", token=admin, json_body={"name": name})
    assert reply.code == 400, reply.body
    assert reply.body["message"].startswith("name:")
    assert await healthy(api)


async def test_a_user_without_job_permission_imports_nothing(api: ApiClient) -> None:
    token = await api.user("mallory", perms=["api://monq.api.jobs"])
    for name in (MARKED, "monq.__main__.X", "this.X"):
        reply = await api.call("POST", "/jobs", token=token, json_body={"name": name})
        assert reply.code in (400, 403), reply.body
    reply = await api.call("POST", "/jobs", token=token, json_body={"name": MARKED})
    assert reply.code == 403 and reply.body["message"] == f"permission denied: job://{MARKED}/x"
    assert not marker_imported()
    assert (await api.call("GET", "/jobs", token=await api.admin())).body["total_count"] == 0
    assert await healthy(api)


async def test_a_chain_link_is_authorised_before_anything_is_imported(api: ApiClient) -> None:
    token = await api.user("chainer", perms=["api://monq.api.jobs",
                                             "job://monq.jobs.*/x"])
    reply = await api.call("POST", "/jobs", token=token, json_body={
        "name": DUMMY, "chain": [{"name": MARKED}]})
    assert reply.code == 403 and "job://tests.import_marker.Marked/x" in reply.body["message"]
    assert not marker_imported()
    bad = await api.call("POST", "/jobs", token=token, json_body={
        "name": DUMMY, "chain": [{"name": "this.X"}]})
    assert bad.code == 400 and bad.body["message"].startswith("chain[0].name:")
    ok = await api.call("POST", "/jobs", token=token, json_body={
        "name": DUMMY, "chain": [{"name": DUMMY, "args": {}, "priority": 3}]})
    assert ok.code == 201, ok.body


async def test_schedules_check_the_job_before_importing_it(api: ApiClient) -> None:
    token = await api.user("planner", perms=["job://monq.jobs.*/x"])
    reply = await api.call("POST", "/schedules", token=token, json_body={
        "name": "sneaky", "job": MARKED, "cron": "* * * * *"})
    assert reply.code == 403
    admin = await api.admin()
    for name in ("monq.__main__.X", "this.X"):
        refused = await api.call("POST", "/schedules", token=admin, json_body={
            "name": "sneaky", "job": name, "cron": "* * * * *"})
        assert refused.code == 400 and refused.body["message"].startswith("job:")
    made = await api.call("POST", "/schedules", token=token, json_body={
        "name": "fine", "job": DUMMY, "cron": "* * * * *"})
    assert made.code == 201
    changed = await api.call("PUT", f"/schedules/{made.data['_id']}", token=token,
                             json_body={"etag": made.data["etag"], "job": MARKED})
    assert changed.code == 403
    assert not marker_imported()
    assert await healthy(api)


async def test_the_deployment_allowlist_holds_for_the_admin(narrowed: ApiClient) -> None:
    admin = await narrowed.admin()
    reply = await narrowed.call("POST", "/jobs", token=admin, json_body={"name": MARKED})
    assert reply.code == 400
    assert reply.body["message"] == (f"name: {MARKED!r} is not an allowed job type "
                                     f"(queue.job_types)")
    schedule = await narrowed.call("POST", "/schedules", token=admin, json_body={
        "name": "x", "job": MARKED, "cron": "* * * * *"})
    assert schedule.code == 400 and schedule.body["message"].startswith("job:")
    assert not marker_imported()
    allowed = await narrowed.call("POST", "/jobs", token=admin,
                                  json_body={"name": "tests.jobtypes.Quick"})
    assert allowed.code == 201, allowed.body
    assert await healthy(narrowed)


async def test_a_restart_is_refused_once_the_type_is_no_longer_allowed(
        api: ApiClient, config: Config, store: Store) -> None:
    admin = await api.admin()
    job = (await api.call("POST", "/jobs", token=admin, json_body={"name": MARKED})).data
    await api.call("POST", f"/jobs/{job['_id']}/remove", token=admin)
    async for narrowed in served(config, store, queue={"job_types": ["monq.jobs.*"]}):
        token = await narrowed.admin()
        reply = await narrowed.call("POST", f"/jobs/{job['_id']}/restart", token=token)
        assert reply.code == 400 and "queue.job_types" in reply.body["message"]
        types = await narrowed.call("GET", "/jobtypes", token=token)
        assert MARKED not in {t["name"] for t in types.data}
