"""Smaller holes of issue #17 (finding 7), over real sockets: the login page sends
people on only to paths of the same site, and a schedule's name never confirms
that a schedule the user may not see exists."""

from __future__ import annotations

import re

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.api_fixtures import ApiClient
from tests.security_fixtures import healthy

DUMMY = "monq.jobs.example.DummyJob"
FAILING = "monq.jobs.example.FailingJob"


async def next_of(api: ApiClient, target: str) -> str:
    """Where the login page sends someone after logging in, for ``?next=target``."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        url = api.base_url + "/login?next=" + "".join(
            c if c.isalnum() else f"%{b:02X}" for c in target for b in c.encode())
        reply = await client.fetch(url, raise_error=False)
    finally:
        client.close()
    assert reply.code == 200
    found = re.search(r'data-next="([^"]*)"', reply.body.decode())
    assert found, reply.body[:500]
    return found.group(1).replace("&amp;", "&")


@pytest.mark.parametrize("target", [
    "/\\evil.example", "/\t/evil.example", "/\n/evil.example", "//evil.example",
    "/\\/evil.example", "https://evil.example/", "http:/evil.example", "javascript:alert(1)",
    "\\\\evil.example", "evil.example", "/ /evil", "/\x00/evil", "/\u3000/evil",
])
async def test_next_never_leaves_the_site(api: ApiClient, target: str) -> None:
    assert await next_of(api, target) == "/"


async def test_next_keeps_same_site_paths(api: ApiClient) -> None:
    assert await next_of(api, "/jobs/12?x=1") == "/jobs/12?x=1"
    assert await next_of(api, "/") == "/"
    assert await healthy(api)


async def test_a_hidden_schedule_name_confirms_nothing(api: ApiClient) -> None:
    admin = await api.admin()
    hidden = await api.call("POST", "/schedules", token=admin, json_body={
        "name": "payroll", "job": FAILING, "cron": "0 3 * * *"})
    assert hidden.code == 201
    eve = await api.user("eve", perms=[f"job://{DUMMY}/x"])
    absent = await api.call("GET", "/schedules/payroll", token=eve)
    assert absent.code == 404
    mine = await api.call("POST", "/schedules", token=eve, json_body={
        "name": "payroll", "job": DUMMY, "cron": "* * * * *"})
    assert mine.code == 201, mine.body  # as if the name were free: for her, it is
    assert (await api.call("GET", "/schedules/payroll", token=eve)).data["job"] == DUMMY
    again = await api.call("POST", "/schedules", token=eve, json_body={
        "name": "payroll", "job": DUMMY, "cron": "* * * * *"})
    assert again.code == 409 and DUMMY in again.body["message"]
    both = await api.call("GET", "/schedules/payroll", token=admin)
    assert both.code == 409 and "give the id" in both.body["message"]
    assert (await api.call("GET", f"/schedules/{hidden.data['_id']}", token=admin)).code == 200
    listed = await api.call("GET", "/schedules", token=eve)
    assert [s["job"] for s in listed.data] == [DUMMY]
    assert await healthy(api)
