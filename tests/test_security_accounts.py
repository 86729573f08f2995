"""Findings 3, 4 and the login lock-out of 7 (issue #17), over real sockets: a user
manager cannot change someone who holds more nor grant what they do not hold
(nested roles expanded), a token dies with its account, and failed logins lock out
one user at one address only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from monq.core.config import Config
from monq.core.store import Store
from tests.api_fixtures import ApiClient
from tests.security_fixtures import healthy, served

MANAGER_PERMS = ["api://monq.api.roles", "api://monq.api.jobs", "job://monq.jobs.*/x"]


async def record(api: ApiClient, token: str, name: str) -> dict[str, Any]:
    reply = await api.call("GET", "/roles", token=token, query={"name": name})
    return next(r for r in reply.data if r["name"] == name)


async def test_a_user_manager_cannot_take_over_the_admin(api: ApiClient) -> None:
    admin = await api.admin()
    manager = await api.user("manager", perms=MANAGER_PERMS)
    target = await record(api, admin, "admin")
    for change in ({"password": "taken-over-now"}, {"email": "me@evil.example"},
                   {"is_active": False}, {"perm": []}):
        reply = await api.call("PUT", f"/roles/{target['_id']}", token=manager,
                               json_body={"etag": target["etag"], **change})
        assert reply.code == 403, (change, reply.body)
        assert "holds more than you do" in reply.body["message"]
    deleted = await api.call("DELETE", f"/roles/{target['_id']}", token=manager,
                             query={"etag": target["etag"]})
    assert deleted.code == 403
    assert await api.login("admin", api.admin_password)
    assert await healthy(api)


async def test_nested_roles_are_expanded_before_granting(api: ApiClient) -> None:
    admin = await api.admin()
    for name, roles in (("inner", ["admin"]), ("middle", ["inner"]), ("outer", ["middle"])):
        made = await api.call("POST", "/roles", token=admin,
                              json_body={"name": name, "role": roles})
        assert made.code == 201, made.body
    manager = await api.user("manager", perms=MANAGER_PERMS)
    me = await record(api, admin, "manager")
    escalate = await api.call("PUT", f"/roles/{me['_id']}", token=manager, json_body={
        "etag": me["etag"], "role": ["standard_user", "outer"]})
    assert escalate.code == 403 and "'cop'" in escalate.body["message"]
    wrapper = await api.call("POST", "/roles", token=manager,
                             json_body={"name": "wrapper", "role": ["outer"]})
    assert wrapper.code == 403
    crony = await api.call("POST", "/roles", token=manager, json_body={
        "name": "crony", "email": "c@example.com", "password": "crony-password",
        "role": ["middle"]})
    assert crony.code == 403
    wider = await api.call("POST", "/roles", token=manager, json_body={
        "name": "wide", "perm": ["job://*/x"]})
    assert wider.code == 403 and "job://*/x" in wider.body["message"]
    profile = await api.call("GET", "/profile", token=manager)
    assert "cop" not in profile.data["permissions"] and "outer" not in profile.data["roles"]


async def test_a_user_manager_may_grant_what_they_hold(api: ApiClient) -> None:
    admin = await api.admin()
    manager = await api.user("manager", perms=MANAGER_PERMS)
    narrower = await api.call("POST", "/roles", token=manager, json_body={
        "name": "reporters", "perm": ["job://monq.jobs.example.*/r", "api://monq.api.jobs/r"]})
    assert narrower.code == 201, narrower.body
    helper = await api.call("POST", "/roles", token=manager, json_body={
        "name": "helper", "email": "h@example.com", "password": "helper-password",
        "role": ["standard_user", "reporters"]})
    assert helper.code == 201, helper.body
    peer = await record(api, admin, "helper")
    changed = await api.call("PUT", f"/roles/{peer['_id']}", token=manager,
                             json_body={"etag": peer["etag"], "realname": "Helper"})
    assert changed.code == 200, changed.body


async def test_a_token_does_not_survive_its_account(api: ApiClient) -> None:
    admin = await api.admin()
    old = await api.user("bob")
    assert (await api.call("GET", "/profile", token=old)).code == 200
    bob = await record(api, admin, "bob")
    gone = await api.call("DELETE", f"/roles/{bob['_id']}", token=admin,
                          query={"etag": bob["etag"]})
    assert gone.code == 200
    again = await api.call("POST", "/roles", token=admin, json_body={
        "name": "bob", "email": "bob2@example.com", "password": "another-password",
        "role": ["standard_user"]})
    assert again.code == 201
    assert (await api.call("GET", "/profile", token=old)).code == 401
    new = await api.login("bob", "another-password")
    assert (await api.call("GET", "/profile", token=new)).data["email"] == "bob2@example.com"
    assert await healthy(api)


async def login_from(api: ApiClient, address: str, username: str, password: str) -> int:
    """Log in from a chosen loopback address (the server sees it as the remote IP)."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        reply = await client.fetch(HTTPRequest(
            api.base_url + "/api/v1/login", method="POST", network_interface=address,
            headers={"Content-Type": "application/json"},
            body=json.dumps({"username": username, "password": password})),
            raise_error=False)
        return reply.code
    finally:
        client.close()


@pytest.fixture
async def short_lockout(config: Config, store: Store) -> Any:
    async for client in served(config, store, api={"login_max_failures": 3,
                                                   "login_lockout_s": 5}):
        yield client


@pytest.fixture
async def long_lockout(config: Config, store: Store) -> Any:
    async for client in served(config, store, api={"login_max_failures": 3,
                                                   "login_lockout_s": 3600}):
        yield client


async def test_failures_elsewhere_never_lock_the_admin_out(long_lockout: ApiClient) -> None:
    api = long_lockout
    for _ in range(4):  # an attacker at another address guesses the admin's password
        await login_from(api, "127.0.0.2", "admin", "guess")
    assert await login_from(api, "127.0.0.2", "admin", "guess") == 429
    for _ in range(4):  # someone at the admin's own address fails as another user
        await login_from(api, "127.0.0.1", "someone", "guess")
    assert await login_from(api, "127.0.0.1", "admin", api.admin_password) == 200
    assert await healthy(api)


async def test_a_correct_password_after_the_window_gets_in(short_lockout: ApiClient) -> None:
    api = short_lockout
    for _ in range(3):
        await login_from(api, "127.0.0.3", "admin", "guess")
    assert await login_from(api, "127.0.0.3", "admin", api.admin_password) == 429
    for _ in range(300):  # the window is 5 s: wait for it to pass, not for a time
        code = await login_from(api, "127.0.0.3", "admin", api.admin_password)
        if code != 429:
            break
        await asyncio.sleep(0.1)
    assert code == 200
