"""Fixtures and helpers of the notification tests: an SMTP server (aiosmtpd) and an HTTP receiver
in the test process on free ports, a clock the test moves, and running a job through
its transitions. Fixtures: `smtp`, `hook`, `clock`, `certificate`."""

from __future__ import annotations

import asyncio
import json
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

from monq.core.config import Config
from monq.core.embedded import free_port
from monq.core.store import Store, layout
from monq.queue.model import JobRecord
from monq.queue.queue import Queue
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
