"""The one place that answers permission questions, for the REST handlers, the
websocket and the CLI alike.

Permission strings:

``cop``
    everything (the built-in role ``admin`` has it).
``api://<pattern>`` or ``api://<pattern>/<crud>``
    may call handlers whose permission name matches, e.g.
    ``api://monq.api.jobs.history`` or ``api://monq.api.jobs.*``; a ``/crud``
    suffix limits it to some methods (c POST, r GET, u PUT, d DELETE), e.g.
    ``api://monq.api.roles/r`` may list users and roles but not change them.
``job://<pattern>/r`` and ``job://<pattern>/x``
    may see jobs whose name matches (their events, logs, args); ``x`` also
    enqueue, kill, remove, restart, hold and resume them.

Patterns are globs (``*``, ``?``) matched against the whole name: anchored, and
never a regular expression written by a user.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from monq.core.auth.core4 import handler_names
from monq.core.errors import ValidationError

ADMIN_PERMISSION = "cop"
_PERMISSION = re.compile(
    r"^(cop|api://[A-Za-z0-9_.*?]+(/[crud]+)?|job://[A-Za-z0-9_.*?]+/[rx])$")
_CRUD = {"POST": "c", "GET": "r", "HEAD": "r", "PUT": "u", "PATCH": "u", "DELETE": "d"}


@dataclass(frozen=True)
class Principal:
    """A logged-in user and everything they may do (roles resolved)."""

    name: str
    permissions: frozenset[str]
    roles: frozenset[str] = frozenset()
    token_version: int = 0
    language: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN_PERMISSION in self.permissions


def check_permission(permission: str) -> str:
    """`permission` if it is well-formed, else a `ValidationError` naming it."""
    if not isinstance(permission, str) or not _PERMISSION.match(permission):
        raise ValidationError(f"invalid permission {permission!r}: expected cop, "
                              f"api://<pattern>[/crud] or job://<pattern>/r|x", field="perm")
    return permission


def _matches(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def may_call(principal: Principal, handler: str, method: str = "GET") -> bool:
    """Whether the user may call the handler named `handler` with `method`."""
    if principal.is_admin:
        return True
    for permission in principal.permissions:
        if not permission.startswith("api://"):
            continue
        pattern, _, crud = permission[6:].partition("/")
        named = any(_matches(pattern, name) for name in handler_names(handler))
        if named and (not crud or _CRUD.get(method, "") in crud):
            return True
    return False


def _job_grants(principal: Principal, job_name: str, modes: str) -> bool:
    if principal.is_admin:
        return True
    for permission in principal.permissions:
        if permission.startswith("job://"):
            pattern, _, mode = permission[6:].rpartition("/")
            if mode in modes and _matches(pattern, job_name):
                return True
    return False


def may_read_job(principal: Principal, job_name: str) -> bool:
    return _job_grants(principal, job_name, "rx")


def may_execute_job(principal: Principal, job_name: str) -> bool:
    return _job_grants(principal, job_name, "x")


def may_grant(principal: Principal, permissions: frozenset[str] | set[str]) -> bool:
    """Only an admin grants permissions the granting user does not hold."""
    return principal.is_admin or set(permissions) <= principal.permissions
