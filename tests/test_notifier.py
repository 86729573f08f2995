"""The notifier against real receivers: an SMTP server (aiosmtpd) and an HTTP server in
the test process, on free ports. Time is the notifier's injected clock: retries are
tested by moving it, not by sleeping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
import tornado.httpserver
import tornado.web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from bson import ObjectId

from monq.core.auth.accounts import Accounts
from monq.core.auth.permissions import Principal
from monq.core.config import Config
from monq.core.embedded import free_port
from monq.core.store import Store, layout
from monq.core.store.events import new_event
from monq.queue.enqueue import EnqueueRequest
from monq.queue.model import JobRecord
from monq.queue.notifier import Notifier
from monq.queue.queue import Queue
from tests.api_fixtures import ApiClient
from tests.queue_fixtures import WORKER

SECRET = "webhook-secret-for-tests"
NOTIFIED = "tests.notifyjobs.Notified"
DUMMY = "tests.notifyjobs.Free"


# Receivers ------------------------------------------------------------------------
@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)
    envelopes: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        self.envelopes.append(list(envelope.rcpt_tos))
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.mailbox = Mailbox()
        self.controller: Controller | None = None
        self.logins: list[tuple[str, bool]] = []

    def start(self, password: bytes | None = None, **options: Any) -> None:
        if password is not None:
            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                             data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and data.password == password
                login = data.login
                self.logins.append((login.decode() if isinstance(login, bytes) else login, ok))
                return AuthResult(success=ok, handled=False)

            options.update(authenticator=authenticate, auth_require_tls=False)
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port,
                                     **options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Hook:
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # replies to give, then 200
    delay_s: float = 0.0  # how long to take over a reply

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


class HookHandler(tornado.web.RequestHandler):
    def initialize(self, hook: Hook) -> None:
        self.hook = hook

    async def post(self) -> None:
        self.hook.requests.append((dict(self.request.headers), self.request.body))
        if self.hook.delay_s:
            await asyncio.sleep(self.hook.delay_s)
        self.set_status(self.hook.statuses.pop(0) if self.hook.statuses else 200)
        self.finish("ok")


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    received = Hook()
    app = tornado.web.Application([("/hook", HookHandler, {"hook": received})])
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    try:
        yield received, f"http://127.0.0.1:{port}/hook"
    finally:
        server.stop()
        await server.close_all_connections()


# The notifier under a clock the test moves ------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)  # BSON keeps milliseconds

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def notifier_config(config: Config, smtp_port: int, **notifier: Any) -> Config:
    return config.with_values(notifier={
        "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_from": "monq@example.com",
        "webhook_secret": SECRET, "webhook_timeout_s": 5.0, "smtp_timeout_s": 5.0,
        "backoff_s": 2.0, **notifier})


async def run_job(queue: Queue, name: str, args: dict[str, Any] | None = None, *,
                  fail: str | None = None, **options: Any) -> JobRecord:
    """Enqueue a job and take it through claim, start, progress and complete (or fail)."""
    job = await queue.enqueue(name, args, **options)
    claim = await queue.claim(WORKER)
    assert claim is not None and claim.job.id == job.id
    await queue.start(job.id, claim.token)
    await queue.progress(job.id, claim.token, 0.5, "half way", {"rows": 42})
    if fail:
        return await queue.fail(job.id, claim.token, fail)
    return await queue.complete(job.id, claim.token)


async def deliveries(store: Store) -> list[dict[str, Any]]:
    collection = store.collection(layout.NOTIFICATION)
    return await collection.find({}).sort("created", 1).to_list(None)


# Tests ------------------------------------------------------------------------------
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


async def test_smtp_down_then_up_retries_until_it_arrives(
        store: Store, config: Config, queue: Queue, smtp: SmtpServer, clock: Clock) -> None:
    await run_job(queue, DUMMY, notifications=[
        {"on": ["complete_job"], "type": "email", "to": ["ops@example.com"]}])
    notifier = Notifier(store, notifier_config(config, smtp.port), clock=clock)
    await notifier.tick()  # nothing listens: the first attempt fails
    [doc] = await deliveries(store)
    assert doc["state"] == "pending" and doc["attempts"] == 1
    assert "ConnectionRefusedError" in doc["last_error"]
    assert doc["next_at"] == clock.now + timedelta(seconds=2)
    clock.advance(1)
    await notifier.tick()  # not due yet
    assert (await deliveries(store))[0]["attempts"] == 1
    clock.advance(1)
    await notifier.tick()  # due, still down
    [doc] = await deliveries(store)
    assert doc["attempts"] == 2 and doc["next_at"] == clock.now + timedelta(seconds=4)
    smtp.start()
    clock.advance(4)
    await notifier.tick()
    [doc] = await deliveries(store)
    assert doc["state"] == "delivered" and doc["attempts"] == 3
    assert len(smtp.mailbox.messages) == 1
    await notifier.tick()
    assert len(smtp.mailbox.messages) == 1


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
    assert ok.code == 201


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
    await store.collection(layout.EVENT).insert_one(late)
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


async def test_language_follows_the_recipient(store: Store, config: Config, queue: Queue,
                                              smtp: SmtpServer, clock: Clock) -> None:
    admin = Principal("admin", frozenset({"cop"}))
    await Accounts(store, config).create({
        "name": "anna", "email": "anna@example.com", "password": "a-long-password-1",
        "language": "de"}, by=admin)
    smtp.start()
    await run_job(queue, DUMMY, notifications=[
        {"on": ["complete_job"], "type": "email", "to": ["anna@example.com"],
         "subject": "Job {{ number }} done", "body": "done",
         "languages": {"de": {"subject": "Auftrag {{ number }} erledigt", "body": "fertig"}}},
        {"on": ["complete_job"], "type": "email", "to": ["bob@example.com"],
         "subject": "Job {{ number }} done", "body": "done",
         "languages": {"de": {"subject": "Auftrag {{ number }} erledigt"}}}])
    await Notifier(store, notifier_config(config, smtp.port), clock=clock).tick()
    subjects = sorted(m["Subject"] for m in smtp.mailbox.messages)
    assert subjects == ["Auftrag 1 erledigt", "Job 1 done"]


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


@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")
async def test_smtp_credentials_are_used_and_never_logged(
        store: Store, config: Config, queue: Queue, smtp: SmtpServer, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    smtp.start(password=b"right-password")
    await run_job(queue, DUMMY, notifications=[
        {"on": ["complete_job"], "type": "email", "to": ["ops@example.com"]}])
    caplog.set_level(logging.DEBUG)
    wrong = notifier_config(config, smtp.port, smtp_username="monq",
                            smtp_password="wrong-password")
    await Notifier(store, wrong, clock=clock).tick()
    [doc] = await deliveries(store)
    assert doc["state"] == "pending" and "SMTPAuthenticationError" in doc["last_error"]
    assert "wrong-password" not in doc["last_error"] and "wrong-password" not in caplog.text
    clock.advance(2)
    right = notifier_config(config, smtp.port, smtp_username="monq",
                            smtp_password="right-password")
    await Notifier(store, right, clock=clock).tick()
    assert (await deliveries(store))[0]["state"] == "delivered"
    # smtplib tries each mechanism the server offers before giving up
    assert smtp.logins[-1] == ("monq", True)
    assert {ok for _, ok in smtp.logins[:-1]} == {False}
    assert len(smtp.mailbox.messages) == 1


async def test_odd_job_filters_are_not_server_errors(api: ApiClient) -> None:
    admin = await api.admin()
    for job in ("99999999999999999999999", "zz", "#1"):
        reply = await api.call("GET", "/notifications", token=admin, query={"job": job})
        assert reply.code == 404, (job, reply.body)


async def test_jobs_without_rules_and_unknown_types_make_no_deliveries(
        store: Store, config: Config, queue: Queue, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    await run_job(queue, DUMMY)
    for _ in range(2):
        await store.collection(layout.EVENT).insert_one(new_event(
            "complete_job", channel="queue", author="x", data={
                "_id": ObjectId(), "number": 99, "name": "monq.nosuch.Job",
                "state": "complete"}))
    caplog.set_level(logging.WARNING, "monq.notifier")
    notifier = Notifier(store, notifier_config(config, free_port()), clock=clock)
    assert await notifier.tick() is False
    await notifier.tick()
    assert await deliveries(store) == []
    failures = [r for r in caplog.records
                if getattr(r, "action", None) == "job_type_rules_failed"]
    assert len(failures) == 1 and "monq.nosuch.Job" in failures[0].getMessage()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made by the openssl command)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = str(where / "cert.pem"), str(where / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    return cert, key


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_smtp_over_tls_checks_the_certificate(
        store: Store, config: Config, queue: Queue, smtp: SmtpServer, clock: Clock,
        certificate: tuple[str, str], mode: str) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if mode == "tls":
        smtp.start(ssl_context=context)
    else:
        smtp.start(tls_context=context, require_starttls=True)
    await run_job(queue, DUMMY, notifications=[
        {"on": ["complete_job"], "type": "email", "to": ["ops@example.com"]}])
    untrusted = notifier_config(config, smtp.port, smtp_tls=mode)
    await Notifier(store, untrusted, clock=clock).tick()
    [doc] = await deliveries(store)
    assert doc["state"] == "pending" and "CERTIFICATE_VERIFY_FAILED" in doc["last_error"]
    clock.advance(2)
    trusted = notifier_config(config, smtp.port, smtp_tls=mode, smtp_ca_file=cert)
    await Notifier(store, trusted, clock=clock).tick()
    assert (await deliveries(store))[0]["state"] == "delivered"
    assert len(smtp.mailbox.messages) == 1


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
