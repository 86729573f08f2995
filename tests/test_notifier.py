"""The notifier against real receivers (see `tests.notify_fixtures`): what each type
sends, groups, idempotent derivation, late events, retention. Time is the notifier's
injected clock: retries are tested by moving it, not by sleeping."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import timedelta

import pytest
from bson import ObjectId

from monq.core.config import Config
from monq.core.embedded import free_port
from monq.core.store import Store, layout
from monq.core.store.events import EventStore, new_event
from monq.notify.daemon import Notifier
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue
from tests.notify_fixtures import (
    DUMMY,
    NOTIFIED,
    SECRET,
    Clock,
    Hook,
    SmtpServer,
    deliveries,
    notifier_config,
    run_job,
)
from tests.queue_fixtures import WORKER


@pytest.fixture
def config(config: Config) -> Config:
    """The receivers of these tests listen on 127.0.0.1: allow private addresses."""
    return config.with_values(notifier={"webhook_allow_private": True})


async def test_each_type_sends_the_right_content(
        store: Store, config: Config, queue: Queue, smtp: SmtpServer,
        hook: tuple[Hook, str], clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    received, url = hook
    smtp.start()
    job = await run_job(queue, DUMMY, {"day": "monday"}, notifications=[
        {"on": ["complete_job"], "type": "email", "to": ["ops@example.com"],
         "cc": ["cc@example.com"], "bcc": ["hidden@example.com"],
         "subject": "#{{ number }} {{ transition }}",
         "body": "{{ description }}; day={{ args.day }}; by {{ enqueued_by }}"},
        {"on": ["progress_job"], "type": "webhook", "url": url,
         "message": "{{ progress }} {{ message }} rows={{ data.rows }} on {{ worker }}"},
        {"on": ["complete_job"], "type": "log", "message": "done: {{ name }}"},
        {"on": ["complete_job"], "type": "websocket", "message": "ws {{ number }}"},
    ])
    notifier = Notifier(store, notifier_config(config, smtp.port), clock=clock)
    caplog.set_level(logging.INFO, "monq.notifier")
    await notifier.tick()

    docs = {d["type"]: d for d in await deliveries(store)}
    assert {t: d["state"] for t, d in docs.items()} == {
        "email": "delivered", "webhook": "delivered", "log": "delivered",
        "websocket": "delivered"}

    [mail] = smtp.mailbox.messages
    assert mail["Subject"] == f"#{job.number} complete_job"
    assert mail["To"] == "ops@example.com" and mail["Cc"] == "cc@example.com"
    assert mail["Bcc"] is None and mail["From"] == "monq@example.com"
    assert mail.get_payload().strip() == (
        f"job #{job.number} ({DUMMY}) completed; day=monday; by tester")
    assert sorted(smtp.mailbox.envelopes[0]) == ["cc@example.com", "hidden@example.com",
                                                 "ops@example.com"]

    [(headers, body)] = received.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Monq-Signature"] == expected
    payload = json.loads(body)
    assert payload["transition"] == "progress_job"
    assert payload["message"] == "0.5 half way rows=42 on w1"
    assert payload["delivery"] == headers["X-Monq-Delivery"] == docs["webhook"]["_id"]
    assert payload["job"]["number"] == job.number and payload["data"] == {"rows": 42}

    lines, _ = await queue.read_log(job.id)
    assert [ln["message"] for ln in lines] == [f"done: {DUMMY}"]
    assert any(getattr(r, "action", None) == "notification" and "done: " in r.getMessage()
               for r in caplog.records)

    events = await store.collection(layout.EVENT).find(
        {"channel": f"job:{job.id}"}).to_list(None)
    assert [(e["name"], e["data"]["message"], e["data"]["_id"]) for e in events] == [
        ("notification", f"ws {job.number}", job.id)]


async def test_job_type_rules_and_groups_fire(store: Store, config: Config, queue: Queue,
                                              clock: Clock) -> None:
    done = await run_job(queue, NOTIFIED, {"day": "tue"})
    failed = await run_job(queue, NOTIFIED, {"day": "wed"}, fail="disk full")
    notifier = Notifier(store, notifier_config(config, free_port()), clock=clock)
    await notifier.tick()
    log_done, _ = await queue.read_log(done.id)
    log_failed, _ = await queue.read_log(failed.id)
    assert [ln["message"] for ln in log_done] == ["report tue done by w1 for tester"]
    assert [(ln["level"], ln["message"]) for ln in log_failed] == [
        ("WARNING", f"ops: job #{failed.number} ({NOTIFIED}) failed: disk full")]


async def test_deriving_again_never_doubles_and_late_events_are_picked_up(
        store: Store, config: Config, queue: Queue, clock: Clock) -> None:
    job = await run_job(queue, DUMMY, notifications=[
        {"on": ["complete_job", "hold_job"], "type": "log"}])
    cfg = notifier_config(config, free_port())
    await Notifier(store, cfg, clock=clock).tick()
    await Notifier(store, cfg, clock=clock).tick()  # a second notifier, or a restart
    assert len(await deliveries(store)) == 1
    # an event relayed late by a sweep keeps its earlier id, behind the cursor
    cursor = (await store.collection(layout.COUNTER).find_one({"_id": "notifier_cursor"}))
    late = new_event("hold_job", channel="queue", author="x", data={
        "_id": job.id, "number": job.number, "name": DUMMY, "state": "pending"})
    late["_id"] = ObjectId.from_datetime(cursor["event_id"].generation_time
                                         - timedelta(seconds=2))
    await EventStore(store).insert([late])
    await Notifier(store, cfg, clock=clock).tick()
    assert sorted(d["transition"] for d in await deliveries(store)) == ["complete_job",
                                                                       "hold_job"]


async def test_a_template_failing_at_fire_time_is_a_failed_delivery(
        store: Store, config: Config, queue: Queue, clock: Clock) -> None:
    await run_job(queue, DUMMY, {"n": 0}, notifications=[
        {"on": ["complete_job"], "type": "log", "message": "{{ 1 / args.n }}"}])
    await Notifier(store, notifier_config(config, free_port()), clock=clock).tick()
    [doc] = await deliveries(store)
    assert doc["state"] == "failed" and doc["last_error"].startswith(
        "template: ZeroDivisionError")


async def test_first_start_looks_back_a_day_and_delivered_ones_expire(
        store: Store, config: Config, queue: Queue, clock: Clock) -> None:
    job = await run_job(queue, DUMMY, notifications=[{"on": ["hold_job"], "type": "log"}])
    old = new_event("hold_job", channel="queue", author="x", data={
        "_id": job.id, "number": job.number, "name": DUMMY, "state": "pending"})
    old["_id"] = ObjectId.from_datetime(clock.now - timedelta(days=2))
    await store.collection(layout.EVENT).insert_one(old)
    await queue.enqueue(DUMMY, notifications=[{"on": ["enqueue_job"], "type": "log"}])
    cfg = notifier_config(config, free_port(), retention_days=7)
    await Notifier(store, cfg, clock=clock).tick()
    assert [d["transition"] for d in await deliveries(store)] == ["enqueue_job"]
    clock.advance(6 * 86400)
    await Notifier(store, cfg, clock=clock).tick()
    assert len(await deliveries(store)) == 1
    clock.advance(2 * 86400)
    await Notifier(store, cfg, clock=clock).tick()
    assert await deliveries(store) == []


async def test_jobs_without_rules_and_unknown_types_make_no_deliveries(
        store: Store, config: Config, queue: Queue, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    await run_job(queue, DUMMY)
    for _ in range(2):
        await EventStore(store).insert([new_event(
            "complete_job", channel="queue", author="x", data={
                "_id": ObjectId(), "number": 99, "name": "monq.nosuch.Job",
                "state": "complete"})])
    caplog.set_level(logging.WARNING, "monq.notifier")
    notifier = Notifier(store, notifier_config(config, free_port()), clock=clock)
    assert await notifier.tick() is False
    await notifier.tick()
    assert await deliveries(store) == []
    failures = [r for r in caplog.records
                if getattr(r, "action", None) == "job_type_rules_failed"]
    assert len(failures) == 1 and "monq.nosuch.Job" in failures[0].getMessage()


async def test_rules_travel_with_chains_and_restarts(store: Store, config: Config,
                                                     queue: Queue, clock: Clock) -> None:
    rule = {"on": ["complete_job", "failed_job"], "type": "log",
            "message": "{{ number }} {{ transition }}"}
    await run_job(queue, DUMMY, chain=[EnqueueRequest(name=DUMMY, notifications=[rule])])
    claim = await queue.claim(WORKER)  # the chained job, #2
    assert claim is not None and claim.job.number == 2
    await queue.complete(claim.job.id, claim.token)
    failed = await run_job(queue, DUMMY, fail="boom", notifications=[rule])
    restarted = await queue.restart(failed.id)
    await Notifier(store, notifier_config(config, free_port()), clock=clock).tick()
    assert sorted((d["number"], d["transition"]) for d in await deliveries(store)) == [
        (2, "complete_job"), (3, "failed_job")]
    assert restarted.number == 4 and restarted.notifications == failed.notifications
    assert [r["message"] for r in restarted.notifications] == ["{{ number }} {{ transition }}"]


async def test_a_webhook_that_does_not_answer_in_time_is_retried(
        store: Store, config: Config, queue: Queue, hook: tuple[Hook, str],
        clock: Clock) -> None:
    received, url = hook
    received.delay_s = 2.0
    await run_job(queue, DUMMY, notifications=[
        {"on": ["complete_job"], "type": "webhook", "url": url}])
    cfg = notifier_config(config, free_port(), webhook_timeout_s=0.2)
    await Notifier(store, cfg, clock=clock).tick()
    [doc] = await deliveries(store)
    assert doc["state"] == "pending" and doc["last_error"].startswith(
        "webhook: HTTPTimeoutError")
