"""Notifications over HTTP: listing, reading and resending deliveries, who sees them,
and rules refused at enqueue."""

from __future__ import annotations

import pytest

from monq.core.config import Config
from monq.core.embedded import free_port
from monq.core.store import Store
from monq.notify.daemon import Notifier
from monq.queue.queue import Queue
from tests.api_fixtures import ApiClient
from tests.notify_fixtures import (
    DUMMY,
    Clock,
    Hook,
    deliveries,
    notifier_config,
    run_job,
)


@pytest.fixture
def config(config: Config) -> Config:
    """The receivers of these tests listen on 127.0.0.1: allow private addresses."""
    return config.with_values(notifier={"webhook_allow_private": True})


async def test_failed_after_the_last_attempt_then_resent_over_the_api(
        store: Store, config: Config, hook: tuple[Hook, str], clock: Clock,
        api: ApiClient) -> None:
    received, url = hook
    received.statuses = [500, 503]
    queue = Queue(store, config, author="admin")
    job = await run_job(queue, DUMMY, notifications=[
        {"on": ["complete_job"], "type": "webhook", "url": url}])
    notifier = Notifier(store, notifier_config(config, free_port(), max_attempts=2),
                        clock=clock)
    await notifier.tick()
    clock.advance(2)
    await notifier.tick()
    [doc] = await deliveries(store)
    assert doc["state"] == "failed" and doc["attempts"] == 2
    assert doc["last_error"] == "webhook: HTTP 503 Service Unavailable"
    assert len(received.requests) == 2

    admin = await api.admin()
    listed = await api.call("GET", "/notifications", token=admin, query={"state": "failed"})
    assert listed.code == 200 and listed.body["total_count"] == 1
    assert listed.data[0]["_id"] == doc["_id"] and listed.data[0]["job_id"] == str(job.id)
    by_job = await api.call("GET", "/notifications", token=admin,
                            query={"job": str(job.number), "state": "delivered"})
    assert by_job.body["total_count"] == 0
    resent = await api.call("POST", f"/notifications/{doc['_id']}/resend", token=admin)
    assert resent.code == 200 and resent.data["state"] == "pending"
    clock.advance(60)  # the API stamped "due now" by the real clock
    await notifier.tick()
    shown = await api.call("GET", f"/notifications/{doc['_id']}", token=admin)
    assert shown.data["state"] == "delivered" and shown.data["resent"] == 1
    assert len(received.requests) == 3


async def test_users_see_and_resend_only_what_their_jobs_allow(
        store: Store, config: Config, clock: Clock, api: ApiClient) -> None:
    queue = Queue(store, config, author="admin")
    job = await run_job(queue, DUMMY, notifications=[
        {"on": ["complete_job"], "type": "log"}])
    await Notifier(store, notifier_config(config, free_port()), clock=clock).tick()
    [doc] = await deliveries(store)
    stranger = await api.user("stranger", perms=["api://monq.api.notifications"])
    reader = await api.user("reader", perms=["api://monq.api.notifications",
                                             "job://tests.notifyjobs.*/r"])
    nobody = await api.user("nobody")
    assert (await api.call("GET", "/notifications", token=stranger)).body["total_count"] == 0
    assert (await api.call("GET", f"/notifications/{doc['_id']}", token=stranger)).code == 404
    assert (await api.call("GET", "/notifications", token=nobody)).code == 403
    assert (await api.call("GET", "/notifications", token=reader)).body["total_count"] == 1
    assert (await api.call("GET", f"/notifications/{doc['_id']}", token=reader)).code == 200
    refused = await api.call("POST", f"/notifications/{doc['_id']}/resend", token=reader)
    assert refused.code == 403 and "job://tests.notifyjobs.Free/x" in \
        refused.body["message"]
    assert (await api.call("GET", "/notifications", token=reader,
                           query={"state": "sent"})).code == 400
    assert (await api.call("GET", "/notifications/nope", token=reader)).code == 404
    assert (await api.call("GET", "/notifications", token=reader,
                           query={"page": 10**20})).code == 400
    assert (await api.call("GET", "/notifications", token=reader,
                           query={"job": str(job.number)})).body["total_count"] == 1


async def test_a_bad_rule_is_a_400_at_enqueue(api: ApiClient) -> None:
    admin = await api.admin()
    reply = await api.call("POST", "/jobs", token=admin, json_body={
        "name": DUMMY, "notifications": [
            {"on": ["complete_job"], "type": "log", "message": "{{ ''.__class__.__mro__ }}"}]})
    assert reply.code == 400 and "notifications[0].message" in reply.body["message"]
    ok = await api.call("POST", "/jobs", token=admin, json_body={
        "name": DUMMY, "notifications": [{"on": ["complete_job"], "type": "websocket"}]})
    assert ok.code == 200


async def test_odd_job_filters_are_not_server_errors(api: ApiClient) -> None:
    admin = await api.admin()
    for job in ("99999999999999999999999", "zz", "#1"):
        reply = await api.call("GET", "/notifications", token=admin, query={"job": job})
        assert reply.code == 404, (job, reply.body)
