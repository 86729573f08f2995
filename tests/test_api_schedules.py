"""Schedules over HTTP: create, list, read, change and remove with etags, bad input
as 400s naming the field, and job permissions deciding what a user sees and does."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_fixtures import ApiClient

DUMMY = "monq.jobs.example.DummyJob"
FAILING = "monq.jobs.example.FailingJob"


def schedule(**fields: Any) -> dict[str, Any]:
    return {"name": "nightly", "job": DUMMY, "cron": "0 3 * * *", **fields}


async def test_create_read_list_change_and_remove(api: ApiClient) -> None:
    admin = await api.admin()
    created = await api.call("POST", "/schedules", token=admin, json_body=schedule(
        args={"sleep": 2}, timezone="Europe/Berlin", jitter_s=30, catchup="all",
        overlap="enqueue"))
    assert created.code == 201, created.body
    data = created.data
    assert data["job"] == DUMMY and data["args"] == {"sleep": 2.0, "steps": 10}
    assert data["timezone"] == "Europe/Berlin" and data["enabled"] is True
    assert data["source"] == "api" and data["catchup"] == "all"
    assert data["next_tick"].endswith(("T01:00:00+00:00", "T02:00:00+00:00"))  # 03:00 Berlin
    by_id = await api.call("GET", f"/schedules/{data['_id']}", token=admin)
    by_name = await api.call("GET", "/schedules/nightly", token=admin)
    assert by_id.data == by_name.data == data
    await api.call("POST", "/schedules", token=admin, json_body=schedule(name="b"))
    listing = await api.call("GET", "/schedules", token=admin, query={"per_page": 1})
    assert listing.body["total_count"] == 2 and [s["name"] for s in listing.data] == ["b"]

    changed = await api.call("PUT", f"/schedules/{data['_id']}", token=admin, json_body={
        "etag": data["etag"], "cron": "*/5 * * * *", "enabled": False})
    assert changed.code == 200, changed.body
    assert changed.data["cron"] == "*/5 * * * *" and changed.data["enabled"] is False
    assert changed.data["etag"] != data["etag"]
    stale = await api.call("PUT", f"/schedules/{data['_id']}", token=admin, json_body={
        "etag": data["etag"], "enabled": True})
    assert stale.code == 412
    removed_stale = await api.call("DELETE", f"/schedules/{data['_id']}", token=admin,
                                   query={"etag": data["etag"]})
    assert removed_stale.code == 412
    removed = await api.call("DELETE", f"/schedules/{data['_id']}", token=admin,
                             query={"etag": changed.data["etag"]})
    assert removed.code == 200
    assert (await api.call("GET", f"/schedules/{data['_id']}", token=admin)).code == 404


@pytest.mark.parametrize(("body", "field", "message"), [
    (schedule(cron="61 * * * *"), "cron", "invalid cron expression '61 * * * *'"),
    (schedule(cron="every day"), "cron", "invalid cron expression"),
    (schedule(timezone="Mars/Olympus"), "timezone", "unknown time zone 'Mars/Olympus'"),
    (schedule(job="monq.jobs.nosuch.Job"), "job",
         "unknown job type 'monq.jobs.nosuch.Job'"),
    (schedule(job="notqualified"), "job", "not a qualified name"),
    (schedule(job=FAILING, args={"message": 3}), "args", "argument 'message'"),
    (schedule(jitter_s=-1), "jitter_s", "jitter_s"),
    (schedule(catchup="sometimes"), "catchup", "catchup: one of none, latest, all"),
    (schedule(overlap="maybe"), "overlap", "overlap: one of skip, enqueue"),
    (schedule(name="has space"), "name", "name:"),
    (schedule(enabled="yes"), "enabled", "enabled:"),
    (schedule(colour="blue"), "colour", "unknown field 'colour'"),
    ({"job": DUMMY, "cron": "* * * * *"}, "name", "name: required"),
])
async def test_bad_input_is_a_400_naming_the_field(api: ApiClient, body: dict[str, Any],
                                                   field: str, message: str) -> None:
    admin = await api.admin()
    reply = await api.call("POST", "/schedules", token=admin, json_body=body)
    assert reply.code == 400, reply.body
    assert reply.body["message"].startswith(field) and message in reply.body["message"]
    assert (await api.call("GET", "/schedules", token=admin)).body["total_count"] == 0


async def test_bad_changes_are_refused_and_change_nothing(api: ApiClient) -> None:
    admin = await api.admin()
    data = (await api.call("POST", "/schedules", token=admin, json_body=schedule())).data
    for change, field in (({"cron": "* * *"}, "cron"), ({"timezone": "Nowhere"}, "timezone"),
                          ({"job": "monq.nosuch.Job"}, "job"),
                          ({"args": {"sleep": "long"}}, "args"),
                          ({"job": FAILING}, "args")):  # its arguments do not suit FailingJob
        reply = await api.call("PUT", f"/schedules/{data['_id']}", token=admin,
                               json_body={"etag": data["etag"], **change})
        assert reply.code == 400 and reply.body["message"].startswith(field), reply.body
    missing = await api.call("PUT", f"/schedules/{data['_id']}", token=admin,
                             json_body={"cron": "* * * * *"})
    assert missing.code == 400 and "etag" in missing.body["message"]
    assert (await api.call("GET", "/schedules/nightly", token=admin)).data == data
    duplicate = await api.call("POST", "/schedules", token=admin, json_body=schedule())
    assert duplicate.code == 409 and "exists already" in duplicate.body["message"]


async def test_permissions_follow_the_job(api: ApiClient) -> None:
    admin = await api.admin()
    mine = (await api.call("POST", "/schedules", token=admin, json_body=schedule(
        name="mine"))).data
    theirs = (await api.call("POST", "/schedules", token=admin, json_body=schedule(
        name="theirs", job=FAILING))).data
    reader = await api.user("reader", perms=[f"job://{DUMMY}/r"])
    doer = await api.user("doer", perms=[f"job://{DUMMY}/x"])
    nobody = await api.user("nobody")

    listing = await api.call("GET", "/schedules", token=reader)
    assert [s["name"] for s in listing.data] == ["mine"] and listing.body["total_count"] == 1
    assert (await api.call("GET", "/schedules", token=nobody)).body["total_count"] == 0
    assert (await api.call("GET", f"/schedules/{theirs['_id']}", token=reader)).code == 404
    assert (await api.call("GET", "/schedules/theirs", token=doer)).code == 404
    assert (await api.call("GET", "/schedules/mine", token=reader)).code == 200

    assert (await api.call("POST", "/schedules", token=reader,
                           json_body=schedule(name="r"))).code == 403
    assert (await api.call("POST", "/schedules", token=doer,
                           json_body=schedule(name="d", job=FAILING))).code == 403
    assert (await api.call("POST", "/schedules", token=doer,
                           json_body=schedule(name="d"))).code == 201
    assert (await api.call("PUT", f"/schedules/{mine['_id']}", token=reader, json_body={
        "etag": mine["etag"], "enabled": False})).code == 403
    assert (await api.call("PUT", f"/schedules/{mine['_id']}", token=doer, json_body={
        "etag": mine["etag"], "job": FAILING})).code == 403
    assert (await api.call("DELETE", f"/schedules/{theirs['_id']}", token=doer,
                           query={"etag": theirs["etag"]})).code == 404
    changed = await api.call("PUT", f"/schedules/{mine['_id']}", token=doer, json_body={
        "etag": mine["etag"], "enabled": False})
    assert changed.code == 200 and changed.data["enabled"] is False
    assert (await api.call("DELETE", f"/schedules/{mine['_id']}", token=doer,
                           query={"etag": changed.data["etag"]})).code == 200
    assert (await api.call("GET", "/schedules")).code == 401
