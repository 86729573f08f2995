"""Sending one rendered delivery: to the log, over SMTP, as a signed webhook POST, or as
an event for websocket subscribers of ``job:<id>``.

Each sender raises `SendError` with a one-line reason when the delivery did not
get through; the notifier then retries it, except after `RefusedSend` (a webhook
whose destination the policy refuses: retrying cannot help, it fails at once).
Nothing here logs a password or the webhook secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal, TypedDict
from urllib.parse import urlparse

from bson import ObjectId
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from monq.core.config import NotifierConfig
from monq.core.store import Store
from monq.core.store.events import EventStore, new_event
from monq.core.store.logs import LogStore
from monq.notify.webhook_policy import PolicyResolver, RefusedDestination, WebhookPolicy

log = logging.getLogger("monq.notifier")

SIGNATURE_HEADER = "X-Monq-Signature"
DELIVERY_HEADER = "X-Monq-Delivery"


class WebhookBody(TypedDict):
    """The JSON a webhook receives (signed over its exact bytes)."""

    type: Literal["notification"]
    delivery: str  # the delivery id: the same on every repeat, to drop duplicates
    transition: str
    description: str
    message: str
    job: dict[str, Any]  # job_id, number, name, state, progress, cancelled, worker, ...
    data: dict[str, Any]  # the transition's data (e.g. given with progress)


class WebsocketNotification(TypedDict):
    """The data of the ``notification`` event on channel ``job:<id>`` (for websocket
    subscribers of that job)."""

    _id: ObjectId
    number: int
    name: str
    transition: str
    delivery: str
    message: str


class SendError(Exception):
    """The delivery did not get through (this attempt)."""


class RefusedSend(SendError):
    """The delivery may not be sent at all (not retried)."""


def webhook_client(cfg: NotifierConfig) -> AsyncHTTPClient:
    """An HTTP client of its own whose every connection goes to an address the
    webhook policy checked (`PolicyResolver`)."""
    resolver = PolicyResolver(policy=WebhookPolicy.from_config(cfg))
    return AsyncHTTPClient(force_instance=True, resolver=resolver)


def sign(body: bytes, secret: str) -> str:
    """The value of the signature header: ``sha256=<hex HMAC-SHA256 of body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(delivery: dict[str, Any]) -> bytes:
    return json.dumps(delivery["payload"]["body"], sort_keys=True, separators=(",", ":"),
                      default=str).encode()


async def send_webhook(delivery: dict[str, Any], cfg: NotifierConfig,
                       client: AsyncHTTPClient) -> None:
    """POST the delivery's body. The destination policy is applied by `client`'s
    resolver (`webhook_client`): to every URL, whenever it was made, and to the
    addresses the connection then uses."""
    body = webhook_body(delivery)
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: str(delivery["_id"]),
               "User-Agent": "monq-notifier"}
    if cfg.webhook_secret:
        headers[SIGNATURE_HEADER] = sign(body, cfg.webhook_secret)
    else:
        log.warning("webhook to %s sent unsigned: set notifier.webhook_secret",
                    urlparse(delivery["payload"]["url"]).hostname,  # no credentials, no query
                    extra={"action": "unsigned_webhook", "delivery": str(delivery["_id"])})
    request = HTTPRequest(delivery["payload"]["url"], method="POST", body=body,
                          headers=headers, request_timeout=cfg.webhook_timeout_s,
                          connect_timeout=cfg.webhook_timeout_s, follow_redirects=False)
    try:
        response = await client.fetch(request, raise_error=False)
    except RefusedDestination as exc:
        raise RefusedSend(f"webhook refused: {exc}") from None
    except (OSError, ValueError, HTTPClientError) as exc:  # refused, bad URL, timed out
        raise SendError(f"webhook: {type(exc).__name__}: {exc}") from None
    if not 200 <= response.code < 300:
        reason = response.error if response.code == 599 else response.reason
        raise SendError(f"webhook: HTTP {response.code} {reason}")


def email_message(delivery: dict[str, Any], sender: str) -> EmailMessage:
    payload = delivery["payload"]
    message = EmailMessage()
    message["Subject"] = " ".join(payload["subject"].split())  # one line
    message["From"] = sender
    if payload["to"]:
        message["To"] = ", ".join(payload["to"])
    if payload["cc"]:
        message["Cc"] = ", ".join(payload["cc"])
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(idstring=str(delivery["_id"]))
    message[DELIVERY_HEADER] = str(delivery["_id"])
    message.set_content(payload["body"])
    return message


def _smtp_send(cfg: NotifierConfig, message: EmailMessage, recipients: list[str]) -> None:
    smtp: smtplib.SMTP
    context = None
    if cfg.smtp_tls != "none":
        context = ssl.create_default_context(cafile=cfg.smtp_ca_file or None)
    if cfg.smtp_tls == "tls":
        smtp = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout_s,
                                context=context)
    else:
        smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout_s)
    with smtp:
        if cfg.smtp_tls == "starttls":
            smtp.starttls(context=context)
        if cfg.smtp_username:
            smtp.login(cfg.smtp_username, cfg.smtp_password)
        smtp.send_message(message, to_addrs=recipients)


async def send_email(delivery: dict[str, Any], cfg: NotifierConfig) -> None:
    payload = delivery["payload"]
    recipients = [*payload["to"], *payload["cc"], *payload["bcc"]]
    message = email_message(delivery, cfg.smtp_from)
    try:
        await asyncio.to_thread(_smtp_send, cfg, message, recipients)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        # the reply of the server or the socket error; never the credentials
        raise SendError(f"email via {cfg.smtp_host}:{cfg.smtp_port}: "
                        f"{type(exc).__name__}: {exc}") from None


async def send_log(delivery: dict[str, Any], store: Store) -> None:
    payload = delivery["payload"]
    level = logging.getLevelName(payload["level"].upper())
    log.log(level, "notification for job #%s: %s", delivery["number"], payload["message"],
            extra={"action": "notification", "job": str(delivery["job_id"]),
                   "delivery": delivery["_id"], "transition": delivery["transition"]})
    await LogStore(store).append([{
        "job_id": delivery["job_id"], "created": datetime.now(UTC),
        "level": logging.getLevelName(level), "message": payload["message"],
        "extra": {"notification": delivery["_id"], "transition": delivery["transition"]}}])


async def send_websocket(delivery: dict[str, Any], store: Store) -> None:
    job_id = delivery["job_id"]
    data: WebsocketNotification = {
        "_id": job_id, "number": delivery["number"], "name": delivery["job_name"],
        "transition": delivery["transition"], "delivery": delivery["_id"],
        "message": delivery["payload"]["message"]}
    await EventStore(store).insert([new_event(
        "notification", channel=f"job:{job_id}", author="notifier", data=dict(data))])
