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

A job name that comes from a client is also checked against the job types the
deployment allows (`JobTypePolicy`, the ``queue.job_types`` globs) before it is
imported: `check_job_name` answers both questions without importing anything.

Granting: without ``cop`` nobody grants a permission they do not hold
(`may_grant`, a pattern is covered by one at least as wide) nor changes a record
that holds more than they do (`holds_all`).
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from monq.core.config import Config
from monq.core.errors import PermissionDenied, ValidationError

ADMIN_PERMISSION = "cop"
_PERMISSION = re.compile(
    r"^(cop|api://[A-Za-z0-9_.*?]+(/[crud]+)?|job://[A-Za-z0-9_.*?]+/[rx])\Z")
_CRUD = {"POST": "c", "GET": "r", "HEAD": "r", "PUT": "u", "PATCH": "u", "DELETE": "d"}


@dataclass(frozen=True)
class Principal:
    """A logged-in user and everything they may do (roles resolved)."""

    name: str
    permissions: frozenset[str]
    roles: frozenset[str] = frozenset()
    token_version: int = 0
    language: str | None = None
    id: str = ""  # the account's immutable id (tokens name it)

    @property
    def is_admin(self) -> bool:
        return ADMIN_PERMISSION in self.permissions


def check_permission(permission: str) -> str:
    """`permission` if it is well-formed, else a `ValidationError` naming it."""
    if not isinstance(permission, str) or not _PERMISSION.match(permission):
        raise ValidationError(f"perm: invalid permission {permission!r}: expected cop, "
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
        if _matches(pattern, handler) and (not crud or _CRUD.get(method, "") in crud):
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


def _covers(held: str, wanted: str) -> bool:
    """Whether holding `held` gives at least everything `wanted` gives.

    A pattern of ``*`` wildcards and literals covers another pattern when it matches
    that pattern's text (its literals can only meet the other's literals, its ``*``
    swallows the other's wildcards); ``?`` in the held pattern is compared exactly.
    """
    if held in (wanted, ADMIN_PERMISSION):
        return True
    for scheme in ("api://", "job://"):
        if not (held.startswith(scheme) and wanted.startswith(scheme)):
            continue
        if scheme == "api://":
            held_pattern, _, held_mode = held[6:].partition("/")
            wanted_pattern, _, wanted_mode = wanted[6:].partition("/")
            modes_ok = not held_mode or (bool(wanted_mode)
                                         and set(wanted_mode) <= set(held_mode))
        else:
            held_pattern, _, held_mode = held[6:].rpartition("/")
            wanted_pattern, _, wanted_mode = wanted[6:].rpartition("/")
            modes_ok = held_mode == wanted_mode or (held_mode == "x" and wanted_mode == "r")
        if modes_ok and "?" not in held_pattern and _matches(held_pattern, wanted_pattern):
            return True
    return False


def may_grant(principal: Principal, permissions: Iterable[str]) -> bool:
    """Whether `principal` may hand out `permissions` (give them to a user or a role,
    directly or through the roles named): each must be covered by one they hold."""
    if principal.is_admin:
        return True
    return all(any(_covers(held, wanted) for held in principal.permissions)
               for wanted in permissions)


def holds_all(principal: Principal, permissions: Iterable[str]) -> bool:
    """Whether `principal` holds everything in `permissions` (the effective ones of
    a user or a role they want to change or delete): without ``cop`` nobody changes
    a record that holds more than they do."""
    return may_grant(principal, permissions)


# Job types from clients --------------------------------------------------------
MAX_JOB_NAME = 200
_JOB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+\Z")
DEFAULT_JOB_TYPES = ("*",)
SHIPPED_JOBS = "monq.jobs."


@dataclass(frozen=True)
class JobTypePolicy:
    """The job types a deployment lets clients name (``queue.job_types``): globs
    over qualified names. Whatever it says, a client never names a module of the
    standard library, one of monq's own modules other than ``monq.jobs``, or any
    name with a part starting with ``_`` (``__main__``, private modules)."""

    patterns: tuple[str, ...] = DEFAULT_JOB_TYPES

    @classmethod
    def from_config(cls, config: Config) -> JobTypePolicy:
        return cls(tuple(config.queue.job_types))

    def refusal(self, name: str) -> str | None:
        """Why clients may not name the job type `name`, or None."""
        if len(name) > MAX_JOB_NAME or not _JOB_NAME.match(name):
            return (f"name: {name[:80]!r} is not a qualified name of a job type "
                    f"(module.Class: letters, digits and _, at most {MAX_JOB_NAME} "
                    f"characters, no part starting with '_')")
        top = name.split(".", 1)[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names or (
                top == "monq" and not name.startswith(SHIPPED_JOBS)):
            return f"name: {name!r} is not an allowed job type"
        if not any(_matches(pattern, name) for pattern in self.patterns):
            return f"name: {name!r} is not an allowed job type (queue.job_types)"
        return None


def check_job_name(principal: Principal, name: object, policy: JobTypePolicy,
                   mode: str = "x", field: str = "name") -> str:
    """`name` if the deployment allows that job type and `principal` may act on it
    (`mode` ``x``) or read it (``r``); decided from the text alone, before anything
    is imported. A malformed or disallowed name is a `ValidationError` naming
    `field`; a name the user may not use is a `PermissionDenied`."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{field}: expected a job type's qualified name",
                              field=field)
    refusal = policy.refusal(name)
    if refusal is not None:
        raise ValidationError(refusal.replace("name:", f"{field}:", 1), field=field)
    if not _job_grants(principal, name, "x" if mode == "x" else "rx"):
        raise PermissionDenied(f"permission denied: job://{name}/{mode}")
    return name
