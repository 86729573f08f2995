"""Finding 6 of issue #17: one request cannot stall the event loop. Logins hash
in threads, so /health answers while many are in flight; costly notification
templates are refused when the rule is made, and those whose cost shows only at
render time are cut off there."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher

from monq.core.errors import ValidationError
from monq.core.store import Store, layout
from monq.notify.rules import check_rules
from monq.notify.templates import MAX_RANGE, RenderError, render
from tests.api_fixtures import ApiClient
from tests.security_fixtures import healthy

DUMMY = "monq.jobs.example.DummyJob"
# Two logins whose check takes about a second each, in one thread each: were the
# hashing on the event loop, /health could be answered at most once per login (before
# its check starts). Few threads of one lane each, so that on a loaded 2-core machine
# the loop is not starved by the hashing itself (8 logins of 4 lanes each were: /health
# answered 5 times once under load, though off the loop).
LOGINS = 2
SLOW_TIME_COST = 12  # argon2 passes (the default is 3)
MIN_ANSWERS = 10


async def test_health_answers_while_logins_are_in_flight(api: ApiClient,
                                                         store: Store) -> None:
    """Clients log in to an account whose hash is slow to check (as a stronger
    argon2 setting makes it); /health is asked again and again meanwhile. Were the
    hashing on the event loop, no /health could be answered while a hash is being
    checked; off the loop, it keeps answering."""
    await api.user("alice", password="alice-password")
    slow = PasswordHasher(time_cost=SLOW_TIME_COST, parallelism=1).hash("alice-password")
    await store.collection(layout.ROLE).update_one({"name": "alice"},
                                                   {"$set": {"password": slow}})
    done: list[int] = []

    async def login() -> None:
        reply = await api.call("POST", "/login", json_body={"username": "alice",
                                                            "password": "alice-password"})
        done.append(reply.code)

    logins = [asyncio.create_task(login()) for _ in range(LOGINS)]
    answered = 0
    while len(done) < LOGINS:
        assert await healthy(api)
        if len(done) < LOGINS:
            answered += 1
    await asyncio.gather(*logins)
    assert done == [200] * LOGINS
    assert answered >= MIN_ANSWERS, f"/health answered only {answered} times during the logins"


NESTED = ("{% for a in range(15000) %}{% for b in range(15000) %}{{ a }}"
          "{% endfor %}{% endfor %}")


@pytest.mark.parametrize("source", [
    NESTED,
    "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
    "{% for a in x %}{% for b in x %}{% for c in x %}{% for d in x %}{% endfor %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{{ range(100000)|list }}",
])
async def test_costly_templates_are_refused_at_enqueue(api: ApiClient, source: str) -> None:
    admin = await api.admin()
    reply = await api.call("POST", "/jobs", token=admin, json_body={
        "name": DUMMY, "notifications": [{"on": ["complete_job"], "type": "log",
                                          "message": source}]})
    assert reply.code == 400, reply.body
    assert reply.body["message"].startswith("notifications[0].message:")
    assert (await api.call("GET", "/jobs", token=admin)).body["total_count"] == 0
    assert await healthy(api)


@pytest.mark.parametrize(("source", "context"), [
    ("{% for a in range(n) %}{% for b in range(n) %}{% for c in range(n) %}{{ a }}"
     "{% endfor %}{% endfor %}{% endfor %}", {"n": MAX_RANGE}),
    ("{% for a in range(n) %}{% for b in range(n) %}{% for c in range(n) %}"
     "{% endfor %}{% endfor %}{% endfor %}", {"n": MAX_RANGE}),
    ("{{ range(n)|list }}", {"n": MAX_RANGE + 1}),
    ("{% for x in items %}{% for y in items %}{{ x }}{{ y }}{% endfor %}{% endfor %}",
     {"items": ["a" * 100] * 1000}),
])
def test_costs_seen_only_at_render_time_are_cut_off(source: str, context: dict) -> None:
    check_rules([{"on": ["complete_job"], "type": "log", "message": source}])
    with pytest.raises(RenderError):
        render(source, context)


def test_a_template_within_the_limits_renders() -> None:
    source = "{% for a in range(3) %}{% for b in range(2) %}{{ a }}{{ b }} {% endfor %}{% endfor %}"
    check_rules([{"on": ["complete_job"], "type": "log", "message": source}])
    assert render(source, {}) == "00 01 10 11 20 21 "
    with pytest.raises(ValidationError):
        check_rules([{"on": ["complete_job"], "type": "log",
                      "message": "{% for a in range(5000) %}{% endfor %}"}])
