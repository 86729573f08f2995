# ruff: noqa: S113 - core4's walkthrough calls requests without timeouts; kept word for word
"""A core4 client runs unchanged against monq: core4's own walkthrough
(docs/source/example/event.rst in plan-net/core4), with only the host and the
``/core4/api`` prefix replaced, as requests and websocket-client calls over real
sockets; and the codes and envelope of the other routes such a client uses."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from websocket import create_connection

from monq.core.store import Store
from monq.core.store.events import EventStore, new_event
from monq.core.store.history import HistoryStore
from tests.api_fixtures import ApiClient
from tests.conftest import ROOT
from tests.helpers import run_cli_async

ENVELOPE = {"_id", "code", "message", "timestamp", "data"}
PAGED = ENVELOPE | {"page", "per_page", "page_count", "total_count", "count"}


def walkthrough(host: str) -> dict[str, Any]:
    """core4's walkthrough, word for word but for ``http://devops:5001/core4/api``
    (now ``host + "/api"``); what it saw, for the test to look at."""
    from requests import get, post

    login = get(host + "/api/login?username=admin&password=hans")
    token = login.json()["data"]["token"]

    rv = post(host + "/api/v1/roles",
              headers={"Authorization": "Bearer " + token},
              json={
                  "name": "test",
                  "realname": "Test User",
                  "email": "test@plan-net.com",
                  "password": "very secret",
                  "role": ["standard_user"],
                  "perm": ["api://core4.api.v1.request.queue.history.*"]
              })
    assert rv.status_code == 200
    etag = rv.json()["data"]["etag"]

    user_login = get(host + "/api/login?username=test&password=very secret")
    user_token = user_login.json()["data"]["token"]

    rv = get(host + "/api/v1/jobs/history?token=" + user_token)
    first = rv

    url = host + "/api/v1/jobs/history?token=" + user_token

    rv = get(url + "&page=1")
    rv = get(url + "&page=2")
    return {"etag": etag, "token": user_token, "history": first, "page2": rv}


def follow(host: str, user_token: str, until: Callable[[dict[str, Any]], bool],
           registered: threading.Event) -> list[dict[str, Any]]:
    """The walkthrough's websocket part; `until` ends its endless loop. `registered` is
    set once the server has confirmed the interest."""
    ws = create_connection(host.replace("http", "ws") + "/api/v1/event?token=" + user_token,
                           timeout=60)
    ws.send(json.dumps({"type": "interest", "data": ["queue"]}))
    seen = [json.loads(ws.recv())]
    registered.set()
    while not until(seen[-1]):
        seen.append(json.loads(ws.recv()))
    ws.close()
    return seen


@pytest.mark.slow
async def test_core4_walkthrough_runs_unchanged(
        server_with: Callable[..., Any], monq_env: dict[str, str], store: Store,
        start_worker: Callable[..., Any]) -> None:
    api, _ = await server_with(admin_password="hans")
    # history documents to page through, as the summarizer writes them
    now = datetime.now(UTC).replace(microsecond=0)
    await HistoryStore(store).insert_many(
        [{"resolution": "second", "created": now - timedelta(seconds=s), "total": s % 3}
         for s in range(60)])
    seen = await asyncio.to_thread(walkthrough, api.base_url)
    assert seen["etag"]
    history = seen["history"]
    assert history.status_code == 200
    body = history.json()
    # monq's pages are 25 long (core4's 10): a client that pages by page_count is served
    assert set(body) >= PAGED and body["page"] == 0 and body["per_page"] == 25
    assert body["total_count"] == 60 and body["page_count"] == 3 and body["count"] == 25
    created = [d["created"] for d in body["data"]]
    assert created == sorted(created, reverse=True)  # newest first, as core4 pages
    last = seen["page2"].json()
    assert seen["page2"].status_code == 200 and last["page"] == 2 and last["count"] == 10

    def done(message: dict[str, Any]) -> bool:
        return message.get("name") == "complete_job"

    registered = threading.Event()
    watcher = asyncio.create_task(asyncio.to_thread(follow, api.base_url, seen["token"], done,
                                                    registered))
    # the interest is registered before the job starts its life
    assert await asyncio.to_thread(registered.wait, 60)
    env = {**monq_env, "PYTHONPATH": str(ROOT)}
    enqueued = await run_cli_async("enqueue", "monq.jobs.example.DummyJob", "sleep=0.2",
                                   env=env)
    assert enqueued.returncode == 0, enqueued.stderr
    start_worker()
    messages = await asyncio.wait_for(watcher, 120)
    assert messages[0] == {"type": "interest", "data": ["queue"],
                           "message": "processed interest in ['queue']"}
    names = [m["name"] for m in messages[1:] if m.get("name") != "summary"]
    assert names[:2] == ["enqueue_job", "request_start_job"] and names[-1] == "complete_job"
    # the user may not read DummyJob: it reaches them as UnauthorizedJob
    assert {m["data"]["name"] for m in messages[1:] if m.get("name") != "summary"} \
        == {"UnauthorizedJob"}


async def test_core4_routes_answer_core4_codes_and_envelope(api: ApiClient) -> None:
    """Every route a core4 client calls: 200 on success with the envelope, the same
    codes for errors (401 without login, 403 without permission, 400 bad input)."""
    base = api.base_url

    def client() -> dict[str, Any]:
        out: dict[str, Any] = {}
        login = requests.get(base + "/api/login",
                             params={"username": "admin", "password": api.admin_password})
        out["login"] = login
        auth = {"Authorization": "Bearer " + login.json()["data"]["token"]}
        out["bad_login"] = requests.get(base + "/api/login",
                                        params={"username": "admin", "password": "wrong"})
        out["profile"] = requests.get(base + "/api/v1/profile", headers=auth)
        created = requests.post(base + "/api/v1/roles", headers=auth, json={
            "name": "reporter", "realname": "R", "email": "r@example.com",
            "password": "very secret", "role": ["standard_user"], "perm": []})
        out["create_role"] = created
        rid, etag = created.json()["data"]["_id"], created.json()["data"]["etag"]
        out["roles"] = requests.get(base + "/api/v1/roles", headers=auth)
        out["role"] = requests.get(base + f"/api/v1/roles/{rid}", headers=auth)
        changed = requests.put(base + f"/api/v1/roles/{rid}", headers=auth,
                               json={"etag": etag, "realname": "Reporter"})
        out["update_role"] = changed
        out["stale_update"] = requests.put(base + f"/api/v1/roles/{rid}", headers=auth,
                                           json={"etag": etag, "realname": "X"})
        out["delete_role"] = requests.delete(
            base + f"/api/v1/roles/{rid}?etag=" + changed.json()["data"]["etag"], headers=auth)
        enqueued = requests.post(base + "/api/v1/jobs", headers=auth,
                                 json={"name": "monq.jobs.example.DummyJob"})
        out["enqueue"] = enqueued
        job = enqueued.json()["data"]["_id"]
        out["jobs"] = requests.get(base + "/api/v1/jobs", headers=auth)
        out["job"] = requests.get(base + f"/api/v1/jobs/{job}", headers=auth)
        out["kill"] = requests.post(base + f"/api/v1/jobs/{job}/kill", headers=auth)
        out["queue_history"] = requests.get(base + "/api/v1/queue/history", headers=auth)
        out["event_history"] = requests.get(base + "/api/v1/event/history", headers=auth)
        out["anonymous"] = requests.get(base + "/api/v1/jobs")
        out["logout"] = requests.post(base + "/api/v1/logout", headers=auth)
        return out

    await EventStore(api.server.store).insert(
        [new_event("message", channel="message", author="admin", data={"text": "hi"})])
    out = await asyncio.to_thread(client)
    for name in ("login", "profile", "create_role", "role", "update_role", "delete_role",
                 "enqueue", "job", "kill", "queue_history", "logout"):
        assert out[name].status_code == 200, (name, out[name].text)
        assert set(out[name].json()) >= ENVELOPE and out[name].json()["code"] == 200, name
    for name in ("roles", "jobs", "event_history"):
        assert out[name].status_code == 200, (name, out[name].text)
        assert set(out[name].json()) >= PAGED, name
    # without a channel, /event/history pages every channel the user may read
    events = out["event_history"].json()["data"]
    assert {e["channel"] for e in events} == {"queue", "message"}
    assert out["bad_login"].status_code == 401 and out["bad_login"].json()["code"] == 401
    assert out["anonymous"].status_code == 401
    assert out["stale_update"].status_code in (400, 412)  # core4: 400; monq: 412 stale etag


async def test_prometheus_scrapes_metrics_at_the_root_with_the_same_protection(
        server_with: Callable[..., Any]) -> None:
    api, _ = await server_with(metrics_token="scrape-token-1234567890")

    def scrape() -> dict[str, requests.Response]:
        url = api.base_url + "/metrics"
        return {"anonymous": requests.get(url),
                "wrong": requests.get(url, headers={"Authorization": "Bearer nope"}),
                "token": requests.get(url, headers={
                    "Authorization": "Bearer scrape-token-1234567890"})}

    seen = await asyncio.to_thread(scrape)
    assert seen["anonymous"].status_code == 401 and seen["wrong"].status_code == 401
    assert seen["token"].status_code == 200
    assert "monq_jobs" in seen["token"].text
    assert seen["token"].headers["Content-Type"].startswith("text/plain")
    admin = await api.admin()
    by_login = await asyncio.to_thread(requests.get, api.base_url + "/metrics",
                                       headers={"Authorization": "Bearer " + admin})
    assert by_login.status_code == 200
    user = await api.user("viewer")
    denied = await asyncio.to_thread(requests.get, api.base_url + "/metrics",
                                     headers={"Authorization": "Bearer " + user})
    assert denied.status_code == 403


async def test_core4_job_management_routes(api: ApiClient) -> None:
    """core4's enqueue (POST /enqueue?name=, the arguments as body) and its job actions
    (PUT /jobs/<action>/<id>) do what monq's own routes do, with the same checks."""
    base = api.base_url + "/api/v1"
    admin = {"Authorization": "Bearer " + await api.admin()}
    reader = {"Authorization": "Bearer " + await api.user(
        "reader", perms=["api://monq.api.jobs*", "job://monq.jobs.example.*/r"])}

    def client() -> dict[str, requests.Response]:
        out = {"enqueue": requests.post(base + "/enqueue?name=monq.jobs.example.DummyJob",
                                        headers=admin, json={"sleep": 5})}
        job = out["enqueue"].json()["data"]["_id"]
        out["bad_args"] = requests.post(base + "/enqueue?name=monq.jobs.example.DummyJob",
                                        headers=admin, json={"sleep": "long"})
        out["no_name"] = requests.post(base + "/enqueue", headers=admin, json={})
        out["not_list"] = requests.get(base + "/enqueue", headers=admin)
        out["denied"] = requests.put(base + f"/jobs/kill/{job}", headers=reader)
        out["kill"] = requests.put(base + f"/jobs/kill/{job}", headers=admin)
        out["restart"] = requests.put(base + f"/jobs/restart/{job}", headers=admin)
        return out

    out = await asyncio.to_thread(client)
    assert out["enqueue"].status_code == 200, out["enqueue"].text
    assert out["enqueue"].json()["data"]["args"]["sleep"] == 5.0
    assert out["bad_args"].status_code == 400 and "sleep" in out["bad_args"].json()["message"]
    assert out["no_name"].status_code == 400 and "name" in out["no_name"].json()["message"]
    assert out["not_list"].status_code == 405
    assert out["denied"].status_code == 403
    assert out["kill"].status_code == 200 and out["kill"].json()["data"]["state"] == "killed"
    assert out["restart"].status_code == 200
    replacing = out["restart"].json()["data"]  # the job that replaces the killed one
    assert replacing["enqueued"]["parent_id"] == out["enqueue"].json()["data"]["_id"]
