"""Users and roles: creating, changing and deleting them, logging in, and turning
a user into a `Principal` with every permission of their (nested) roles.

Records are plain fields checked here one by one (types, formats, unknown keys),
so that nothing a client sends reaches a MongoDB query unchecked.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from monq.core.auth.passwords import MIN_LENGTH, Passwords
from monq.core.auth.permissions import (
    ADMIN_PERMISSION,
    Principal,
    check_permission,
    holds_all,
    may_grant,
)
from monq.core.config import Config
from monq.core.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    StaleEtag,
    TooManyRequests,
    ValidationError,
)
from monq.core.ids import maybe_object_id, object_id
from monq.core.store import Store
from monq.core.store.roles import RoleStore

ADMIN_ROLE = "admin"
STANDARD_ROLE = "standard_user"
STANDARD_PERMISSIONS = ("api://monq.api.auth.profile", "api://monq.api.events.stream",
                        "api://monq.api.events.history")
LOGIN_FAILED = "wrong user name or password"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")
_EMAIL = re.compile(r"^[^@\s$]{1,64}@[^@\s$]{1,255}\Z")
FIELDS: dict[str, type] = {"name": str, "realname": str, "email": str, "password": str,
                           "role": list, "perm": list, "is_active": bool, "language": str}
PROFILE_FIELDS = frozenset({"realname", "email", "password", "language"})


def first_token_version() -> int:
    """A new account's token version: microseconds since the epoch. Versions only
    grow (each revocation adds one, and takes far longer than a microsecond), so a
    name deleted and created again never meets a version its old tokens carry."""
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Login:
    principal: Principal
    rehashed: bool = False


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """A record as the API shows it: no password hash."""
    out = {k: v for k, v in doc.items() if k not in ("password",)}
    out["_id"] = str(doc["_id"])
    out["etag"] = str(doc["etag"])
    return out


def parse_id(value: str) -> ObjectId:
    return object_id(value, "_id", f"not a valid id: {value!r}")


def parse_etag(value: Any) -> ObjectId:
    if not isinstance(value, str):
        raise ValidationError("etag: expected the record's current etag (a string)",
                              field="etag")
    return object_id(value, "etag", f"etag: not a valid etag: {value!r}")


def check_fields(data: Mapping[str, Any], allowed: frozenset[str] | None = None
                 ) -> dict[str, Any]:
    """Known fields of the right types and formats, or a `ValidationError` naming one."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        kind = FIELDS.get(key)
        if kind is None or (allowed is not None and key not in allowed):
            raise ValidationError(f"{key}: unknown or read-only field {key!r}"[:200],
                                  field=key)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ValidationError(f"{key}: expected {kind.__name__}, got {value!r}"[:200],
                                  field=key)
        out[key] = value
    if "name" in out and not _NAME.match(out["name"]):
        raise ValidationError("name: 1 to 64 letters, digits, _ . @ or -", field="name")
    if "email" in out and not _EMAIL.match(out["email"]):
        raise ValidationError("email: not an email address", field="email")
    if "password" in out and len(out["password"]) < MIN_LENGTH:
        raise ValidationError(f"password: at least {MIN_LENGTH} characters",
                              field="password")
    for key in ("role", "perm"):
        if key in out and not all(isinstance(v, str) for v in out[key]):
            raise ValidationError(f"{key}: expected a list of strings", field=key)
    for permission in out.get("perm", []):
        check_permission(permission)
    return out


class Accounts:
    def __init__(self, store: Store, config: Config) -> None:
        self.roles = RoleStore(store)
        self.config = config

    @functools.cached_property
    def passwords(self) -> Passwords:
        # its hasher is made on first use: a command that never checks a password pays
        # no hash
        return Passwords(self.config.api)

    # Reading --------------------------------------------------------------------
    async def get(self, record_id: ObjectId) -> dict[str, Any]:
        doc = await self.roles.by_id(record_id)
        if doc is None:
            raise NotFound(f"no user or role {record_id}")
        return doc

    async def by_name(self, name: str, kind: str = "user") -> dict[str, Any] | None:
        """The user (or, with ``kind="role"``, the role) `name`, or None."""
        return await self.roles.by_name(name, kind)

    async def principal(self, name: str) -> Principal | None:
        """The active user `name` with the permissions of all their roles, or None."""
        return await self._principal(await self.roles.by_name(name))

    async def principal_by_id(self, account_id: str) -> Principal | None:
        """The active user whose immutable id is `account_id`, or None."""
        record_id = maybe_object_id(account_id)
        if record_id is None:
            return None
        return await self._principal(await self.roles.by_id(record_id))

    async def _principal(self, doc: dict[str, Any] | None) -> Principal | None:
        if doc is None or doc.get("kind") != "user" or not doc.get("is_active", True):
            return None
        permissions, roles = await self.expand(doc)
        return Principal(doc["name"], frozenset(permissions), frozenset(roles),
                         doc.get("token_version", 0), doc.get("language"), str(doc["_id"]))

    async def expand(self, doc: Mapping[str, Any]) -> tuple[set[str], set[str]]:
        """Every permission and role a record has, its roles' nested roles included
        (``cop`` when ``admin`` is among them)."""
        permissions, roles = set(doc.get("perm") or ()), set()
        asked: set[str] = set()
        pending = sorted({r for r in doc.get("role") or () if isinstance(r, str)})
        while pending:
            asked |= set(pending)
            found = await self.roles.roles_named(pending)
            for role in found:
                roles.add(role["name"])
                permissions |= {p for p in role.get("perm") or () if isinstance(p, str)}
            pending = sorted({r for role in found for r in role.get("role") or ()
                              if isinstance(r, str) and r not in asked})
        if ADMIN_ROLE in roles:
            permissions.add(ADMIN_PERMISSION)
        return permissions, roles

    async def token_versions(self, names: Sequence[str]) -> dict[str, int]:
        """The current token version of each active user among `names` (one query);
        a name missing from the result is gone or deactivated."""
        return await self.roles.token_versions(names)

    # Logging in -----------------------------------------------------------------
    async def login(self, name: str, password: str, address: str) -> Principal:
        """Check a user's password. Too many failures for one user from one address
        lock that pair out for a while (429): failures elsewhere, or for other users,
        never lock the admin out of their own address, and once the window passes a
        correct password gets in. An unknown user looks like a wrong password. The
        argon2 work runs off the event loop."""
        now = datetime.now(UTC)
        keys = [f"user:{name}@{address}"]
        until = await self.roles.failures(keys, now)
        if until is not None:
            raise TooManyRequests("too many failed logins: try again later",
                                  retry_after_s=max(1, int((until - now).total_seconds())))
        doc = await self.roles.by_name(name) if isinstance(name, str) else None
        stored = doc.get("password") if doc and doc.get("kind") == "user" else None
        ok = await self.passwords.verify_async(stored, password)
        principal = await self._principal(doc) if ok else None
        if principal is None:
            await self.roles.record_failure(keys, now, self.config.api.login_max_failures,
                                            self.config.api.login_lockout_s)
            raise AuthenticationFailed(LOGIN_FAILED)
        await self.roles.clear_failures(keys)
        if stored and self.passwords.needs_rehash(stored):
            await self.roles.update(doc["_id"], None,  # type: ignore[index]
                                    {"password": await self.passwords.hash_async(password)})
        return principal

    async def logout(self, name: str) -> None:
        """Revoke every token of the user."""
        doc = await self.roles.by_name(name)
        if doc is not None:
            await self.roles.update(doc["_id"], None, {}, bump_version=True)

    # Changing -------------------------------------------------------------------
    async def _check_roles(self, name: str, roles: list[str], kind: str) -> None:
        found = {r["name"]: r for r in await self.roles.roles_named(roles)}
        for role in roles:
            if role not in found:
                raise ValidationError(f"role: no role {role!r}", field="role")
        seen: set[str] = set()
        pending = list(roles)
        while pending:
            if kind == "role" and name in pending:
                raise ValidationError(f"role: {name!r} would include itself", field="role")
            seen |= set(pending)
            pending = [r for doc in await self.roles.roles_named(pending)
                       for r in doc.get("role") or () if r not in seen]

    async def _check_grants(self, by: Principal, fields: dict[str, Any]) -> None:
        """Without ``cop`` nobody grants a permission they do not hold, directly or
        through the roles named (expanded fully: a role may include roles)."""
        if by.is_admin or ("perm" not in fields and "role" not in fields):
            return
        granted, _ = await self.expand({"perm": fields.get("perm") or [],
                                        "role": fields.get("role") or []})
        if not may_grant(by, granted):
            missing = sorted(p for p in granted if not may_grant(by, {p}))
            raise PermissionDenied(f"permission denied: you do not hold {missing[0]!r}, "
                                   f"so you may not grant it")

    async def _check_holds(self, by: Principal, current: Mapping[str, Any]) -> None:
        """Without ``cop`` nobody changes or deletes a user or role that holds more
        than they do (the admin's password, a role of admins)."""
        if by.is_admin:
            return
        held, _ = await self.expand(current)
        if not holds_all(by, held):
            raise PermissionDenied(f"permission denied: {current['name']!r} holds more than "
                                   f"you do")

    async def create(self, data: Mapping[str, Any], by: Principal) -> dict[str, Any]:
        fields = check_fields(data)
        if "name" not in fields:
            raise ValidationError("name: required", field="name")
        kind = "user" if "password" in fields or "email" in fields else "role"
        if kind == "user" and ("password" not in fields or "email" not in fields):
            missing = "password" if "password" not in fields else "email"
            raise ValidationError(f"{missing}: required for a user", field=missing)
        await self._check_roles(fields["name"], fields.get("role", []), kind)
        await self._check_grants(by, fields)
        now = datetime.now(UTC)
        doc = {"_id": ObjectId(), "kind": kind, "realname": None, "role": [], "perm": [],
               "is_active": True, "language": None, **fields, "etag": ObjectId(),
               "token_version": first_token_version(), "created": now, "updated": now}
        if kind == "user":
            doc["password"] = await self.passwords.hash_async(fields["password"])
        if await self.roles.by_name(fields["name"], kind) is not None:
            raise Conflict(f"the {kind} name {fields['name']!r} is taken")
        await self.roles.insert(doc)
        return doc

    async def update(self, record_id: ObjectId, etag: ObjectId, data: Mapping[str, Any],
                     by: Principal, *, allowed: frozenset[str] | None = None
                     ) -> dict[str, Any]:
        current = await self.get(record_id)
        fields = check_fields(data, allowed)
        if allowed is None:  # the profile route changes only the caller's own record
            await self._check_holds(by, current)
        if "name" in fields and fields["name"] != current["name"]:
            if await self.roles.by_name(fields["name"], current["kind"]) is not None:
                raise Conflict(f"the {current['kind']} name {fields['name']!r} is taken")
            if current["kind"] == "role" and await self.roles.users_with_role(current["name"]):
                raise Conflict("a role in use cannot be renamed")
        if "role" in fields:
            await self._check_roles(fields.get("name", current["name"]), fields["role"],
                                    current["kind"])
        if allowed is None:
            await self._check_grants(by, fields)
        revoke = "password" in fields or fields.get("is_active") is False or (
            "name" in fields and fields["name"] != current["name"])
        if "password" in fields:
            if current["kind"] != "user":
                raise ValidationError("password: a role has none", field="password")
            fields["password"] = await self.passwords.hash_async(fields["password"])
        fields["updated"] = datetime.now(UTC)
        doc = await self.roles.update(record_id, etag, fields, bump_version=revoke)
        if doc is None:
            raise StaleEtag("the record changed since it was read (its etag is not "
                            "current): reload it and try again")
        return doc

    async def delete(self, record_id: ObjectId, etag: ObjectId, by: Principal) -> None:
        current = await self.get(record_id)
        await self._check_holds(by, current)
        if current["kind"] == "role" and await self.roles.users_with_role(current["name"]):
            raise Conflict(f"role {current['name']!r} is still given to someone")
        if not await self.roles.delete(record_id, etag):
            raise StaleEtag("the record changed since it was read (its etag is not "
                            "current): reload it and try again")

    async def page(self, *, name: str | None, role: str | None, skip: int, limit: int
                   ) -> tuple[list[dict[str, Any]], int]:
        return await self.roles.page(name=name, role=role, skip=skip, limit=limit)

    # First start ----------------------------------------------------------------
    async def bootstrap(self) -> str | None:
        """Create the admin role and user and the standard_user role if missing; the
        generated admin password when one was made (to print once), else None."""
        now = datetime.now(UTC)
        for name, perms in ((ADMIN_ROLE, [ADMIN_PERMISSION]),
                            (STANDARD_ROLE, list(STANDARD_PERMISSIONS))):
            if await self.roles.by_name(name, "role") is None:
                await self.roles.insert({
                    "_id": ObjectId(), "kind": "role", "name": name, "realname": None,
                    "role": [], "perm": perms, "is_active": True, "language": None,
                    "etag": ObjectId(), "token_version": 0, "created": now, "updated": now})
        username = self.config.api.admin_username
        if await self.roles.by_name(username) is not None:
            return None
        password = self.config.api.admin_password or secrets.token_urlsafe(12)
        await self.roles.insert({
            "_id": ObjectId(), "kind": "user", "name": username, "realname": "administrator",
            "email": f"{username}@localhost",
            "password": await self.passwords.hash_async(password),
            "role": [ADMIN_ROLE], "perm": [], "is_active": True, "language": None,
            "etag": ObjectId(), "token_version": first_token_version(), "created": now,
            "updated": now})
        return None if self.config.api.admin_password else password
