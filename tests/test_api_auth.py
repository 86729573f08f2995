"""Login, tokens, roles and permissions over real sockets."""

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from monq.core.auth.tokens import load_secret
from monq.core.config import Config
from tests.api_fixtures import ApiClient


async def test_core4_workflow(api: ApiClient) -> None:
    admin = await api.admin()
    created = await api.call("POST", "/roles", token=admin, json_body={
        "name": "test", "realname": "Test User", "email": "test@example.com",
        "password": "test-password", "role": ["standard_user"],
        "perm": ["api://monq.api.jobs.history"], "is_active": True})
    assert created.code == 201
    assert created.data["name"] == "test" and "password" not in created.data
    assert created.data["etag"]
    token = await api.login("test", "test-password")
    profile = await api.call("GET", "/profile", token=token)
    assert profile.code == 200
    assert "api://monq.api.jobs.history" in profile.data["permissions"]
    assert "standard_user" in profile.data["roles"]
    denied = await api.call("GET", "/roles", token=token)
    assert denied.code == 403
    assert denied.body["message"] == "permission denied: api://monq.api.roles"


async def test_envelope_and_request_id(api: ApiClient) -> None:
    reply = await api.call("GET", "/health")
    assert reply.code == 200 and reply.data == {"mongodb": "ok"}
    assert set(reply.body) >= {"_id", "code", "message", "timestamp", "data"}
    assert reply.headers["X-Request-Id"] == reply.body["_id"]
    missing = await api.call("GET", "/nowhere")
    assert missing.code == 404 and missing.body["code"] == 404


async def test_login_by_form_and_query(api: ApiClient) -> None:
    form = await api.call("POST", "/login", body=b"username=admin&password="
                          + api.admin_password.encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.code == 200 and form.data["token"]
    assert "monq_token=" in form.headers["Set-Cookie"]
    assert "HttpOnly" in form.headers["Set-Cookie"]
    query = await api.call("GET", "/login", query={"username": "admin",
                                                   "password": api.admin_password})
    assert query.code == 200
    cookie = form.headers["Set-Cookie"].split(";")[0]
    by_cookie = await api.call("GET", "/profile", headers={"Cookie": cookie})
    assert by_cookie.code == 200
    by_query = await api.call("GET", "/profile", query={"token": query.data["token"]})
    assert by_query.code == 200


async def test_unknown_user_and_wrong_password_look_the_same(api: ApiClient) -> None:
    a = await api.call("POST", "/login", json_body={"username": "nobody", "password": "x"})
    b = await api.call("POST", "/login", json_body={"username": "admin", "password": "x"})
    assert a.code == b.code == 401
    assert a.body["message"] == b.body["message"] == "wrong user name or password"


async def test_bad_tokens_get_401(api: ApiClient, config: Config) -> None:
    good = await api.admin()
    header, payload, signature = good.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["ver"] += 1  # signed for another version: the signature no longer fits
    tampered_payload = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    secret = load_secret(config)
    no_exp = jwt.encode({"sub": "admin", "ver": 0}, secret, algorithm="HS256")
    expired = jwt.encode({"sub": "admin", "ver": 0, "exp": int(time.time()) - 10}, secret,
                         algorithm="HS256")
    wrong_key = jwt.encode({"sub": "admin", "ver": 0, "exp": int(time.time()) + 60},
                           "k" * 48, algorithm="HS256")
    alg_none = jwt.encode({"sub": "admin", "ver": 0, "exp": int(time.time()) + 60}, None,
                          algorithm="none")
    for token in (f"{header}.{tampered_payload}.{signature}", no_exp, expired, wrong_key,
                  alg_none, "garbage", ""):
        reply = await api.call("GET", "/profile", token=token or None)
        assert reply.code == 401, token
    assert (await api.call("GET", "/profile", token=good)).code == 200


async def test_logout_and_password_change_revoke_tokens(api: ApiClient) -> None:
    token = await api.user("bob", password="bob-password-1")
    second = await api.login("bob", "bob-password-1")
    assert (await api.call("POST", "/logout", token=token)).code == 200
    assert (await api.call("GET", "/profile", token=second)).code == 401
    token = await api.login("bob", "bob-password-1")
    profile = await api.call("GET", "/profile", token=token)
    changed = await api.call("PUT", "/profile", token=token, json_body={
        "etag": profile.data["etag"], "password": "bob-password-2"})
    assert changed.code == 200
    assert (await api.call("GET", "/profile", token=token)).code == 401
    fresh = changed.headers["X-Monq-Token"]
    assert (await api.call("GET", "/profile", token=fresh)).code == 200
    await api.login("bob", "bob-password-2")


async def test_brute_force_gets_429_with_retry_after(api: ApiClient) -> None:
    for _ in range(5):
        reply = await api.call("POST", "/login", json_body={"username": "admin",
                                                            "password": "wrong"})
        assert reply.code == 401
    locked = await api.call("POST", "/login", json_body={"username": "admin",
                                                         "password": api.admin_password})
    assert locked.code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 60


async def test_adm_is_not_admin(api: ApiClient) -> None:
    token = await api.user("adm")
    assert (await api.call("GET", "/roles", token=token)).code == 403
    reply = await api.call("POST", "/login", json_body={"username": "adm",
                                                        "password": api.admin_password})
    assert reply.code == 401


async def test_profile_cannot_grant_itself_anything(api: ApiClient) -> None:
    token = await api.user("carol")
    etag = (await api.call("GET", "/profile", token=token)).data["etag"]
    for field, value in (("perm", ["cop"]), ("role", ["admin"]), ("is_active", True),
                         ("name", "admin")):
        reply = await api.call("PUT", "/profile", token=token,
                               json_body={"etag": etag, field: value})
        assert reply.code == 400, field
        assert repr(field) in reply.body["message"]
    assert (await api.call("GET", "/roles", token=token)).code == 403


@pytest.mark.parametrize("payload", [
    {"name": {"$ne": None}}, {"name": "x", "email": {"$where": "sleep(1000)"}},
    {"$set": {"perm": ["cop"]}}, {"name": "x", "perm": [{"$gt": ""}]},
    {"na.me": "x"}, {"name": ["admin"]},
])
async def test_operator_injection_in_bodies_is_400(api: ApiClient,
                                                   payload: dict) -> None:
    admin = await api.admin()
    reply = await api.call("POST", "/roles", token=admin, json_body=payload)
    assert reply.code == 400, reply.body
    login = await api.call("POST", "/login", json_body={"username": {"$ne": None},
                                                        "password": {"$ne": None}})
    assert login.code == 400


async def test_query_parameters_are_typed_and_known(api: ApiClient) -> None:
    admin = await api.admin()
    assert (await api.call("GET", "/roles", token=admin, query={"page": "x"})).body[
        "message"] == "parameter 'page': expected an integer, got 'x'"
    unknown = await api.call("GET", "/roles", token=admin, query={"sort": "1"})
    assert unknown.code == 400 and unknown.body["message"] == "unknown parameter 'sort'"
    regex = await api.call("GET", "/roles", token=admin, query={"name": ".*"})
    assert regex.code == 200 and regex.data == []  # escaped, not a regular expression
    injected = await api.call("GET", "/roles", token=admin, query={"name": '{"$ne": null}'})
    assert injected.code == 400
    assert injected.body["message"] == "parameter 'name': may not contain '$'"


async def test_roles_pagination(api: ApiClient) -> None:
    admin = await api.admin()
    for i in range(5):
        await api.call("POST", "/roles", token=admin, json_body={"name": f"r{i}",
                                                                 "perm": []})
    reply = await api.call("GET", "/roles", token=admin, query={"per_page": 3, "page": 1})
    assert reply.code == 200
    assert reply.body["total_count"] == 8  # admin, standard_user, the admin user, r0..r4
    assert reply.body["page"] == 1 and reply.body["per_page"] == 3
    assert reply.body["page_count"] == 3 and reply.body["count"] == 3


async def test_etag_concurrency_exactly_one_wins(api: ApiClient) -> None:
    admin = await api.admin()
    role = (await api.call("POST", "/roles", token=admin,
                           json_body={"name": "ops", "perm": []})).data
    replies = await asyncio.gather(*(api.call(
        "PUT", f"/roles/{role['_id']}", token=admin,
        json_body={"etag": role["etag"], "perm": [f"job://job{i}.*/r"]}) for i in range(4)))
    assert sorted(r.code for r in replies) == [200, 412, 412, 412]
    stale = await api.call("DELETE", f"/roles/{role['_id']}", token=admin,
                           query={"etag": role["etag"]})
    assert stale.code == 412
    fresh = (await api.call("GET", f"/roles/{role['_id']}", token=admin)).data
    gone = await api.call("DELETE", f"/roles/{role['_id']}", token=admin,
                          query={"etag": fresh["etag"]})
    assert gone.code == 200
    assert (await api.call("GET", f"/roles/{role['_id']}", token=admin)).code == 404


async def test_roles_nest_and_cycles_are_refused(api: ApiClient) -> None:
    admin = await api.admin()
    a = (await api.call("POST", "/roles", token=admin,
                        json_body={"name": "a", "perm": ["job://x.*/r"]})).data
    await api.call("POST", "/roles", token=admin, json_body={"name": "b", "role": ["a"]})
    token = await api.user("dave", roles=["b", "standard_user"])
    profile = await api.call("GET", "/profile", token=token)
    assert "job://x.*/r" in profile.data["permissions"]
    cycle = await api.call("PUT", f"/roles/{a['_id']}", token=admin,
                           json_body={"etag": a["etag"], "role": ["b"]})
    assert cycle.code == 400 and "include itself" in cycle.body["message"]
    taken = await api.call("POST", "/roles", token=admin, json_body={"name": "a"})
    assert taken.code == 409


async def test_only_admins_grant_what_they_do_not_hold(api: ApiClient) -> None:
    token = await api.user("manager", perms=["api://monq.api.roles", "job://a.*/r"])
    ok = await api.call("POST", "/roles", token=token,
                        json_body={"name": "reader", "perm": ["job://a.*/r"]})
    assert ok.code == 201
    escalate = await api.call("POST", "/roles", token=token,
                              json_body={"name": "evil", "perm": ["cop"]})
    assert escalate.code == 403
    admin_role = await api.call("POST", "/roles", token=token, json_body={
        "name": "evil2", "email": "e@example.com", "password": "evil-password",
        "role": ["admin"]})
    assert admin_role.code == 403


async def test_deactivated_user_is_locked_out(api: ApiClient) -> None:
    token = await api.user("eve")
    admin = await api.admin()
    eve = (await api.call("GET", "/roles", token=admin, query={"name": "eve"})).data[0]
    off = await api.call("PUT", f"/roles/{eve['_id']}", token=admin,
                         json_body={"etag": eve["etag"], "is_active": False})
    assert off.code == 200
    assert (await api.call("GET", "/profile", token=token)).code == 401
    again = await api.call("POST", "/login", json_body={"username": "eve",
                                                        "password": "user-password-1"})
    assert again.code == 401


async def test_openapi_describes_every_route(api: ApiClient) -> None:
    reply = await api.call("GET", "/openapi.json")
    assert reply.code == 200
    paths = reply.body["paths"]
    assert {"/api/v1/login", "/api/v1/roles", "/api/v1/roles/{record_id}", "/api/v1/profile",
            "/api/v1/health", "/api/v1/logout", "/api/v1/openapi.json"} <= set(paths)
    assert paths["/api/v1/roles"]["get"]["x-permission"] == "api://monq.api.roles"
    assert {p["name"] for p in paths["/api/v1/roles"]["get"]["parameters"]} == {
        "page", "per_page", "name", "role"}


async def test_a_token_near_its_expiry_is_refreshed(api: ApiClient, config: Config) -> None:
    secret = load_secret(config)
    profile = (await api.call("GET", "/profile", token=await api.admin())).data
    soon = jwt.encode({"sub": profile["_id"], "ver": profile["token_version"],
                       "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    reply = await api.call("GET", "/profile", token=soon)
    assert reply.code == 200
    fresh = reply.headers["X-Monq-Token"]
    claims = jwt.decode(fresh, secret, algorithms=["HS256"])
    assert claims["exp"] > time.time() + config.api.token_expiry_s - 60
    far = await api.admin()
    assert "X-Monq-Token" not in (await api.call("GET", "/profile", token=far)).headers


async def test_cookies_are_secure_behind_an_https_public_url(
        api: ApiClient, server_with: Callable[..., Any]) -> None:
    plain = await api.call("POST", "/login", json_body={"username": "admin",
                                                         "password": api.admin_password})
    assert "Secure" not in plain.headers["Set-Cookie"]
    proxied, _ = await server_with(public_url="https://monq.example.com/")
    reply = await proxied.call("POST", "/login", json_body={"username": "admin",
                                                             "password": api.admin_password})
    assert "Secure" in reply.headers["Set-Cookie"]
    proxied.http.close()
