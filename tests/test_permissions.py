"""The permission module: globs anchored to the whole name, crud suffixes, job modes."""

import pytest

from monq.core.auth.permissions import (
    Principal,
    check_permission,
    may_call,
    may_execute_job,
    may_grant,
    may_read_job,
)
from monq.core.errors import ValidationError


def user(*perms: str) -> Principal:
    return Principal("u", frozenset(perms))


def test_api_patterns_match_the_whole_name() -> None:
    p = user("api://monq.api.jobs.history")
    assert may_call(p, "monq.api.jobs.history")
    assert not may_call(p, "monq.api.jobs.history2")  # no accidental prefix grants
    assert not may_call(p, "xmonq.api.jobs.history")
    assert may_call(user("api://monq.api.jobs.*"), "monq.api.jobs.kill")
    assert not may_call(user("api://monq.api.jobs.*"), "monq.api.roles")


def test_crud_suffix_limits_methods() -> None:
    p = user("api://monq.api.roles/r")
    assert may_call(p, "monq.api.roles", "GET")
    assert not may_call(p, "monq.api.roles", "POST")
    assert not may_call(p, "monq.api.roles", "DELETE")
    assert may_call(user("api://monq.api.roles/cd"), "monq.api.roles", "DELETE")


def test_job_modes() -> None:
    reader, runner = user("job://reports.*/r"), user("job://reports.*/x")
    assert may_read_job(reader, "reports.Daily") and not may_execute_job(reader, "reports.Daily")
    assert may_read_job(runner, "reports.Daily") and may_execute_job(runner, "reports.Daily")
    assert not may_read_job(reader, "other.reports.Daily")
    admin = user("cop")
    assert may_call(admin, "anything", "DELETE") and may_execute_job(admin, "any.Job")


@pytest.mark.parametrize("bad", ["api://(a+)+$", "job://x/w", "job://x", "cops", "api://",
                                 "api://a/z", "file:///etc/passwd"])
def test_malformed_permissions_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="invalid permission"):
        check_permission(bad)


def test_may_grant_only_what_one_holds() -> None:
    p = user("job://a.*/r")
    assert may_grant(p, {"job://a.*/r"})
    assert not may_grant(p, {"job://a.*/x"})
    assert may_grant(user("cop"), {"job://a.*/x"})
