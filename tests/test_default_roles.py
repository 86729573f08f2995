"""What the default roles may do, as README.rst says: standard_user logs in, reads
its profile and the event stream, and nothing of jobs; a role made as the README
shows lets its users list, enqueue and act on their own jobs only."""

from __future__ import annotations

from tests.api_fixtures import ApiClient
from tests.conftest import ROOT
from tests.helpers import run_monq

DUMMY = "monq.jobs.example.DummyJob"


async def test_standard_user_sees_its_profile_and_events_but_no_jobs(api: ApiClient) -> None:
    token = await api.user("sam")
    assert (await api.call("GET", "/profile", token=token)).code == 200
    assert (await api.call("GET", "/event/history", token=token)).code == 200
    schedules = await api.call("GET", "/schedules", token=token)  # of readable jobs: none
    assert schedules.code == 200 and schedules.data == []
    for method, path in (("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/workers"),
                         ("GET", "/notifications"),
                         ("GET", "/roles")):
        reply = await api.call(method, path, token=token,
                               json_body={"name": DUMMY} if method == "POST" else None)
        assert reply.code == 403, (method, path, reply.body)


async def test_the_readme_role_runs_its_own_jobs_only(
        api: ApiClient, monq_env: dict[str, str]) -> None:
    readme = (ROOT / "README.rst").read_text()
    assert "--perm api://monq.api.jobs* --perm api://monq.api.jobtypes" in readme
    created = run_monq("roles", "create", "reporter", "--role", "standard_user",
                       "--perm", "api://monq.api.jobs*", "--perm", "api://monq.api.jobtypes",
                       "--perm", "job://monq.jobs.example.*/x", env=monq_env)
    assert created.returncode == 0, created.stderr
    token = await api.user("ann", roles=["reporter"])
    mine = await api.call("POST", "/jobs", token=token, json_body={"name": DUMMY})
    assert mine.code == 200, mine.body
    other = await api.call("POST", "/jobs", token=token,
                           json_body={"name": "tests.jobtypes.Quick"})
    assert other.code == 403
    listed = await api.call("GET", "/jobs", token=token)
    assert [j["name"] for j in listed.data] == [DUMMY]
    killed = await api.call("POST", f"/jobs/{mine.data['_id']}/kill", token=token)
    assert killed.code == 200 and killed.data["state"] == "killed"
