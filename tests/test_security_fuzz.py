"""Issue #17's fuzz pass, beyond schemathesis's schema-valid inputs: malformed and
hostile bodies (unknown and internal keys, wrong types, huge numbers, deep nesting,
``$`` and ``.`` keys, odd unicode, bytes that are not JSON) posted to every write
route of the real app over real sockets. No reply may be a 5xx, and the node
serves /health afterwards. Seeded, so a failure repeats."""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from monq.api.app import ROUTES
from monq.api.base import BaseHandler
from monq.core.config import Config
from monq.core.store import Store
from tests.api_fixtures import ApiClient
from tests.security_fixtures import healthy, served

SEED = 17
VALUES_PER_FIELD = 8
MIXES_PER_ROUTE = 30
WRITES = ("post", "put", "delete")
DUMMY = "monq.jobs.example.DummyJob"

# JSON text, so that what json.dumps cannot write (NaN, lone surrogates) is in too
HOSTILE_VALUES = [
    "null", "true", "false", "0", "-1", "1.5", str(2**70), str(-(2**70)), "1e308",
    "-1e308", "1e999", "NaN", "Infinity", "-Infinity", '""', '"x"', '"' + "x" * 5000 + '"',
    '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\\u202e\\u200b"',
    '"\\ud835\\udd18\\ud835\\udd2b"',
    '"../../etc/passwd"', '"monq.__main__.X"', '"this.X"', '"* * * * *"', '"cop"',
    '"job://*/x"', '"2026-01-01T00:00:00"', '"9999-12-31T23:59:59+00:00"', "[]", "{}",
    '[["a"]]', '{"$gt": ""}', '{"$where": "sleep(1000)"}', '{"a.b": 1}', '{"_id": 1}',
    "[" * 50 + "]" * 50, '{"a":' * 50 + "1" + "}" * 50, '["\\ud800"]', "[1, 2, 3]",
]
HOSTILE_KEYS = ["_id", "$set", "a.b", "job_id", "state", "kind", "token_version", "etag",
                "source", "owner", "number", "\\ud800", "", "x" * 300, "__proto__",
                "constructor", "ключ", "name", "perm", "role", "password", "chain", "hold"]
RAW_BODIES = [b"", b"null", b"[]", b'"x"', b"{", b"\xff\xfe\x00", b"{}" * 1000,
              b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 2000 + b"1" + b"}" * 2000,
              b'{"name": 1, "name": 2}', b"\x00" * 100]


def schema_keys(handler: type[BaseHandler], method: str) -> list[str]:
    schema = handler.bodies.get(method.upper(), {})
    return list(schema.get("properties", {}))


def hostile_value(rng: random.Random, depth: int = 0) -> str:
    """A hostile value, sometimes inside an object or a list (as in ``args``)."""
    roll = rng.random()
    if depth < 3 and roll < 0.2:
        return '{"' + rng.choice(["x", "steps", "sleep", "$x", "a.b"]) + '": ' + hostile_value(
            rng, depth + 1) + "}"
    if depth < 3 and roll < 0.3:
        return "[" + hostile_value(rng, depth + 1) + "]"
    return rng.choice(HOSTILE_VALUES)


def hostile_bodies(rng: random.Random, keys: list[str]) -> Iterator[tuple[bytes, bool]]:
    """Bodies, each with whether to send it as a form too: every field of the route
    with hostile values (nested ones too), then random mixes with unknown keys."""
    for raw in RAW_BODIES:
        yield raw, True
    name = '"name": ' + json.dumps(DUMMY)
    for key in keys:
        values = [*rng.sample(HOSTILE_VALUES, VALUES_PER_FIELD),
                  '{"steps": ' + str(2**70) + "}", '{"sleep": "\\ud800"}',
                  hostile_value(rng, 1)]
        for value in values:
            members = [f'"{key}": {value}'] + ([name] if key != "name" else [])
            yield ("{" + ", ".join(members) + "}").encode(), False
    for _ in range(MIXES_PER_ROUTE):
        fields = {}
        for _ in range(rng.randint(1, 4)):
            fields[rng.choice(keys + HOSTILE_KEYS)] = hostile_value(rng)
        if keys and rng.random() < 0.5:
            fields.setdefault("name", json.dumps(DUMMY))
        members = ", ".join(f'"{k}": {v}' for k, v in fields.items())
        yield ("{" + members + "}").encode(), True


@pytest.fixture
async def fuzzed(config: Config, store: Store) -> AsyncIterator[ApiClient]:
    async for client in served(config, store, api={"login_max_failures": 1_000_000}):
        yield client


async def targets(api: ApiClient, admin: str) -> dict[str, str]:
    """Real ids for the routes' path parameters."""
    job = await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY})
    role = await api.call("POST", "/roles", token=admin, json_body={"name": "fuzzed"})
    schedule = await api.call("POST", "/schedules", token=admin, json_body={
        "name": "fuzzed", "job": DUMMY, "cron": "* * * * *"})
    return {"job_id": job.data["_id"], "record_id": role.data["_id"],
            "schedule_id": schedule.data["_id"], "delivery_id": "0" * 24,
            "action": "hold"}


def fill(pattern: str, ids: dict[str, str]) -> str:
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: ids[m.group(1)], pattern)
    return path.removeprefix("/api/v1")


async def test_hostile_bodies_on_every_write_route_get_no_5xx(fuzzed: ApiClient) -> None:
    api = fuzzed
    rng = random.Random(SEED)
    admin = await api.admin()
    ids = await targets(api, admin)
    tried: list[str] = []
    for pattern, handler in ROUTES:
        for method in WRITES:
            if getattr(handler, method) is getattr(BaseHandler, method):
                continue
            path = fill(pattern, ids)
            tried.append(f"{method.upper()} {path}")
            for body, as_form in hostile_bodies(rng, schema_keys(handler, method)):
                for content_type in ("application/json", "application/x-www-form-urlencoded"
                                     )[:2 if as_form else 1]:
                    reply = await api.call(method.upper(), path, token=admin, body=body,
                                           headers={"Content-Type": content_type})
                    assert reply.code < 500, (method, path, body[:200], reply.body)
                    if reply.code == 401:  # the fuzz logged out or changed the password
                        admin = await api.admin()
    assert len(tried) >= 12, tried
    assert await healthy(api)
