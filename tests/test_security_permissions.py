"""The permission module's answers about granting and job names (issue #17),
which the API tests exercise end to end: here every rule on its own."""

from __future__ import annotations

import pytest

from monq.core.auth.permissions import (
    JobTypePolicy,
    Principal,
    check_job_name,
    holds_all,
    may_grant,
)
from monq.core.errors import PermissionDenied, ValidationError
from monq.core.store import Store, layout


def user(*perms: str) -> Principal:
    return Principal("u", frozenset(perms))


@pytest.mark.parametrize(("held", "wanted", "ok"), [
    ("job://monq.jobs.*/x", "job://monq.jobs.example.*/r", True),
    ("job://monq.jobs.*/x", "job://monq.jobs.example.DummyJob/x", True),
    ("job://monq.jobs.*/r", "job://monq.jobs.example.DummyJob/x", False),
    ("job://monq.jobs.*/x", "job://*/x", False),
    ("job://monq.jobs.*/x", "job://monq.*/x", False),
    ("job://a?/x", "job://a*/x", False),
    ("job://a?/x", "job://a?/x", True),
    ("api://monq.api.*", "api://monq.api.roles/r", True),
    ("api://monq.api.roles/r", "api://monq.api.roles", False),
    ("api://monq.api.roles/cr", "api://monq.api.roles/r", True),
    ("api://monq.api.roles/r", "api://monq.api.roles/ru", False),
    ("api://monq.api.jobs", "job://monq.api.jobs/x", False),
    ("job://*/x", "cop", False),
    ("cop", "cop", True),
])
def test_a_grant_needs_a_permission_at_least_as_wide(held: str, wanted: str, ok: bool) -> None:
    assert may_grant(user(held), {wanted}) is ok
    assert holds_all(user(held), {wanted}) is ok


def test_the_admin_grants_anything() -> None:
    assert may_grant(user("cop"), {"job://*/x", "api://*"})


@pytest.mark.parametrize("name", ["this.X", "os.path.X", "monq.__main__.X", "monq.cli.X",
                                  "_x.Y", "a._b.C", "a", "a.", ".a", "a..b", "a.b\n",
                                  "a-b.C", "a.b c", "é.X", "x" * 201 + ".Y"])
def test_names_clients_may_never_give(name: str) -> None:
    assert JobTypePolicy(("*",)).refusal(name) is not None
    with pytest.raises(ValidationError):
        check_job_name(user("cop"), name, JobTypePolicy(("*",)))


def test_the_allowlist_and_the_permission_decide_in_that_order() -> None:
    policy = JobTypePolicy(("myproject.jobs.*", "monq.jobs.*"))
    assert policy.refusal("myproject.jobs.Report") is None
    assert policy.refusal("monq.jobs.example.DummyJob") is None
    assert "queue.job_types" in (policy.refusal("otherproject.X") or "")
    with pytest.raises(ValidationError):
        check_job_name(user("job://*/x"), "otherproject.X", policy)
    with pytest.raises(PermissionDenied):
        check_job_name(user("job://myproject.jobs.*/r"), "myproject.jobs.Report", policy)
    assert check_job_name(user("job://myproject.jobs.*/r"), "myproject.jobs.Report",
                          policy, mode="r") == "myproject.jobs.Report"


async def test_the_old_cluster_wide_schedule_name_index_is_dropped(store: Store) -> None:
    schedules = store.collection(layout.SCHEDULE)
    await schedules.drop_index("name_job")
    await schedules.create_index("name", name="name", unique=True)
    await store.ensure_indexes()
    indexes = await schedules.index_information()
    assert "name" not in indexes and indexes["name_job"]["unique"]
