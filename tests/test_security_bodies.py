"""Findings 2 and 7 of issue #17: closed body schemas and hostile values. Every
refusal is a 400 (413 for size) naming the field, changes nothing, and leaves the
node serving /health. A malformed document that reached the database anyway is
skipped by the summarizer, which keeps serving."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bson import ObjectId

from monq.core.config import Config
from monq.core.store import Store, layout
from monq.history.daemon import Summarizer
from tests.api_fixtures import ApiClient
from tests.security_fixtures import healthy

DUMMY = "monq.jobs.example.DummyJob"


@pytest.mark.parametrize(("body", "field"), [
    ({"name": DUMMY, "job_id": {"$oid": "x"}}, "job_id"),
    ({"name": DUMMY, "job_id": {"nested": 1}}, "job_id"),
    ({"name": DUMMY, "state": "complete"}, "state"),
    ({"name": DUMMY, "wait_for": ["x"]}, "wait_for"),
    ({"name": DUMMY, "hold": "false"}, "hold"),
    ({"name": DUMMY, "hold": 0}, "hold"),
    ({"name": DUMMY, "priority": 2**70}, "priority"),
    ({"name": DUMMY, "priority": True}, "priority"),
    ({"name": DUMMY, "priority": 1.5}, "priority"),
    ({"name": DUMMY, "delay_s": 1e308}, "delay_s"),
    ({"name": DUMMY, "delay_s": -1}, "delay_s"),
    ({"name": DUMMY, "attempts": 0}, "attempts"),
    ({"name": DUMMY, "at": "9999-01-01T00:00:00+00:00"}, "at"),
    ({"name": DUMMY, "at": "tomorrow"}, "at"),
    ({"name": DUMMY, "args": {"n": 2**70}}, "args.n"),
    ({"name": DUMMY, "args": {"\ud800": 1}}, "args"),
    ({"name": DUMMY, "args": "x"}, "args"),
    ({"name": DUMMY, "chain": "x"}, "chain"),
    ({"name": DUMMY, "chain": [1]}, "chain[0]"),
    ({"name": DUMMY, "chain": [{"args": {}}]}, "chain[0].name"),
    ({"name": DUMMY, "chain": [{"name": DUMMY, "job_id": 1}]}, "chain[0].job_id"),
    ({"name": DUMMY, "chain": [{"name": DUMMY, "priority": "high"}]}, "chain[0].priority"),
    ({"name": DUMMY, "tags": ["a", 1]}, "tags[1]"),
    ({"name": "\ud800.X"}, "name"),
    ({"name": 5}, "name"),
    ({}, "name"),
])
async def test_bad_enqueue_bodies_are_a_400_naming_the_field(
        api: ApiClient, body: dict[str, Any], field: str) -> None:
    admin = await api.admin()
    reply = await api.call("POST", "/jobs", token=admin,
                           body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
    assert reply.code == 400, reply.body
    assert reply.body["message"].startswith(field + ":"), reply.body["message"]
    assert (await api.call("GET", "/jobs", token=admin)).body["total_count"] == 0
    assert await healthy(api)


@pytest.mark.parametrize(("raw", "code", "start"), [
    (b"[" * 100_000 + b"]" * 100_000, 400, "body: nested deeper"),
    (b'{"name": "' + DUMMY.encode() + b'", "args": ' + b'{"a":' * 40 + b"1" + b"}" * 40
     + b"}", 400, "args.a.a"),
    (b'{"name": "' + DUMMY.encode() + b'", "args": {"x": "\\ud800"}}', 400, "args.x:"),
    (b'{"name": "' + DUMMY.encode() + b'", "priority": NaN}', 400, "priority:"),
    (b'{"name": "' + DUMMY.encode() + b'", "delay_s": Infinity}', 400, "delay_s:"),
    (b'{"name": "' + DUMMY.encode() + b'", "args": {"a": 1e999}}', 400, "args.a:"),
    (b"\xff\xfe", 400, "body: not valid JSON"),
    (b'"just a string"', 400, "body: expected a JSON object"),
    (b'{"name": "' + DUMMY.encode() + b'", "args": {"x": "' + b"a" * (20 * 1024 * 1024)
     + b'"}}', 413, "body: larger than"),
])
async def test_hostile_raw_bodies(api: ApiClient, raw: bytes, code: int, start: str) -> None:
    admin = await api.admin()
    reply = await api.call("POST", "/jobs", token=admin, body=raw,
                           headers={"Content-Type": "application/json"})
    assert reply.code == code, reply.body
    assert reply.body["message"].startswith(start), reply.body["message"]
    assert (await api.call("GET", "/jobs", token=admin)).body["total_count"] == 0
    assert await healthy(api)


async def test_a_long_name_glob_is_a_400(api: ApiClient) -> None:
    admin = await api.admin()
    for glob in ("a" * 500, "*a" * 30):
        reply = await api.call("GET", "/jobs", token=admin, query={"name": glob})
        assert reply.code == 400 and "'name'" in reply.body["message"], reply.body
    huge = await api.call("GET", "/roles", token=admin, query={"name": "x" * 5000})
    assert huge.code == 400 and "'name'" in huge.body["message"]
    assert await healthy(api)


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/login", {"username": "admin", "password": "x", "remember": True}, "remember"),
    ("POST", "/login", {"username": ["admin"], "password": "x"}, "username"),
    ("POST", "/roles", {"name": "r", "kind": "user"}, "kind"),
    ("POST", "/roles", {"name": "r", "token_version": 0}, "token_version"),
    ("POST", "/roles", {"name": "r", "is_active": "false"}, "is_active"),
    ("POST", "/roles", {"name": "r", "perm": "cop"}, "perm"),
    ("POST", "/schedules", {"name": "s", "job": DUMMY, "cron": "* * * * *",
                            "source": "type"}, "source"),
    ("POST", "/schedules", {"name": "s", "job": DUMMY, "cron": "* * * * *",
                            "enabled": "false"}, "enabled"),
    ("POST", "/maintenance", {"name": "x"}, "name"),
    ("POST", "/logout", {"all": True}, "all"),
    ("PUT", "/profile", {"etag": "x", "perm": ["cop"]}, "perm"),
])
async def test_every_write_route_refuses_unknown_and_mistyped_fields(
        api: ApiClient, method: str, path: str, body: dict[str, Any], field: str) -> None:
    admin = await api.admin()
    before = (await api.call("GET", "/roles", token=admin)).body["total_count"]
    reply = await api.call(method, path, token=admin, json_body=body)
    assert reply.code == 400, reply.body
    assert reply.body["message"].startswith(field + ":"), reply.body["message"]
    assert (await api.call("GET", "/roles", token=admin)).body["total_count"] == before
    maintenance = await api.call("GET", "/maintenance", token=admin)
    assert maintenance.data == {"global": False, "names": []}
    assert (await api.call("GET", "/schedules", token=admin)).body["total_count"] == 0
    assert await healthy(api)


async def test_booleans_must_be_booleans(api: ApiClient) -> None:
    admin = await api.admin()
    held = await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY,
                                                                   "hold": True})
    assert held.code == 201 and held.data["held"] is True
    refused = await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY,
                                                                      "hold": "false"})
    assert refused.code == 400 and refused.body["message"] == "hold: expected true or false"


async def test_the_summarizer_skips_malformed_documents_and_keeps_serving(
        config: Config, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """What a client once could store (a job_id given as an object) no longer stops
    the summarizer: it logs the document once, skips it, and counts the rest."""
    queue = store.collection(layout.QUEUE)
    events = store.collection(layout.EVENT)
    good = ObjectId()
    await queue.insert_many([
        {"_id": {"evil": 1}, "number": 1, "name": DUMMY, "state": "pending"},
        {"_id": ObjectId(), "number": 2, "name": {"x": 1}, "state": "pending"},
        {"_id": ObjectId(), "number": 3, "name": DUMMY, "state": "sleeping"},
        {"_id": good, "number": 4, "name": DUMMY, "state": "pending"}])
    await events.insert_many([
        {"_id": ObjectId(), "name": "enqueue_job", "channel": "queue", "created": None,
         "data": {"_id": {"evil": 1}, "name": DUMMY, "state": "pending"}},
        {"_id": ObjectId(), "name": "enqueue_job", "channel": "queue", "created": None,
         "data": ["not", "a", "dict"]}])
    summarizer = Summarizer(store, config)
    for _ in range(3):
        await summarizer.tick()
    assert summarizer.model.summary().counts == {"pending": 1}
    skipped = [r for r in caplog.records if getattr(r, "action", "") == "malformed_document"]
    assert len(skipped) == len({r.getMessage() for r in skipped}) >= 2
