"""Email notifications against a real SMTP server in the test process: retries while
it is down, credentials, STARTTLS and TLS with certificate checks, languages."""

from __future__ import annotations

import logging
import ssl
from datetime import timedelta

import pytest

from monq.core.auth.accounts import Accounts
from monq.core.auth.permissions import Principal
from monq.core.config import Config
from monq.core.store import Store
from monq.notify.daemon import Notifier
from monq.queue.queue import Queue
from tests.notify_fixtures import (
    DUMMY,
    Clock,
    SmtpServer,
    deliveries,
    notifier_config,
    run_job,
)


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
