"""The notifier: derives deliveries from queue events and sends them.

Every transition writes exactly one event to sys.event (see `monq.queue.context`), so
deliveries are derived from events rather than written by every transition:

1. *Derive.* The notifier reads the queue channel of sys.event after its cursor
   (kept in sys.counter, moved only forward and only after the events before it
   were derived) through an `EventReader`, the one way every reader follows
   sys.event: it also takes events relayed late (within ``queue.relay_bound_s``)
   and loads only events it has not returned before. On its
   very first start (no cursor) it looks back `FIRST_LOOKBACK_S`, so that an
   existing installation is not flooded with notifications of old events. For
   each event it loads the job's rules (the job type's ``notifications``, the job
   document's ``notifications``, groups expanded), renders those that fire on the
   event, and inserts one delivery per rule under an ``_id`` hashed from the
   event id and the rule's place, so deriving again never makes a second one.
2. *Send.* Due pending deliveries are claimed one at a time with a lease
   (`NotificationStore.claim`), sent, and marked delivered; a failed attempt is
   retried with doubling backoff (`retry_delay_s`) until ``max_attempts``, then
   marked failed with the error (a webhook the destination policy refuses, see
   `monq.notify.webhook_policy`, is marked failed at once). A notifier killed
   mid-send leaves its delivery pending; it is sent again when the lease runs
   out: at least once, and with ``notifier.concurrency`` 1 (the default) at most
   one repeat per kill.

log, email and webhook deliveries are at least once; websocket ones are one
attempt (only live subscribers get them). Several notifiers may run at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from tornado.httpclient import AsyncHTTPClient

from monq.core.config import Config
from monq.core.errors import Error
from monq.core.loops import periodic
from monq.core.services import wait_for_database
from monq.core.store import Store
from monq.core.store.events import EventReader, EventStore
from monq.core.store.notifications import NotificationStore
from monq.notify.rules import EVENTS, Rule, expand, job_type_rules
from monq.notify.senders import (
    RefusedSend,
    SendError,
    WebhookBody,
    send_email,
    send_log,
    send_webhook,
    send_websocket,
    webhook_client,
)
from monq.notify.templates import RenderError, render, template_context
from monq.queue.job import load_job_type

log = logging.getLogger("monq.notifier")

FIRST_LOOKBACK_S = 24 * 3600.0
BATCH = 1000
MAX_RETRY_DELAY_S = 3600.0
CLEANUP_EVERY_S = 60.0
TYPE_RETRY_S = 60.0  # a job type that failed to import is tried again after this


def delivery_id(event_id: ObjectId, place: str) -> str:
    """The delivery of the rule at `place` for this event: the same every time."""
    return hashlib.sha256(f"{event_id}|{place}".encode()).hexdigest()[:24]


def retry_delay_s(attempts: int, backoff_s: float) -> float:
    """The wait after the `attempts`-th failed attempt: backoff doubling, capped."""
    return min(MAX_RETRY_DELAY_S, backoff_s * 2 ** max(0, attempts - 1))


def outcome(delivery: Mapping[str, Any], error: str | None, now: datetime,
            backoff_s: float, retry: bool = True) -> dict[str, Any]:
    """The fields to set after an attempt that ended with `error` (None: delivered);
    with `retry` false a failed attempt is the last."""
    if error is None:
        return {"state": "delivered", "delivered_at": now, "last_error": None, "owner": None}
    if not retry or delivery["attempts"] >= delivery["max_attempts"]:
        return {"state": "failed", "failed_at": now, "last_error": error, "owner": None}
    return {"last_error": error, "owner": None,
            "next_at": now + timedelta(seconds=retry_delay_s(delivery["attempts"], backoff_s))}


def render_payload(rule: Rule, context: Mapping[str, Any], language: str | None,
                   delivery: str) -> dict[str, Any]:
    """What to send for `rule`: its templates rendered (`RenderError` if one fails)."""
    texts = {k: render(v, context) for k, v in rule.templates_for(language).items()}
    if rule.type == "email":
        return {"subject": texts["subject"], "body": texts["body"], "to": list(rule.to),
                "cc": list(rule.cc), "bcc": list(rule.bcc)}
    if rule.type == "webhook":
        body: WebhookBody = {
            "type": "notification", "delivery": delivery,
            "transition": context["transition"], "description": context["description"],
            "message": texts["message"],
            "job": {k: context[k] for k in ("job_id", "number", "name", "state", "progress",
                                            "cancelled", "worker", "error", "enqueued_by",
                                            "args")},
            "data": context["data"]}
        return {"url": rule.url, "body": body}
    if rule.type == "log":
        return {"message": texts["message"], "level": rule.level}
    return {"message": texts["message"]}


class Notifier:
    name = "notifier"

    def __init__(self, store: Store, config: Config, *,
                 clock: Callable[[], datetime] | None = None,
                 owner: str | None = None) -> None:
        self.store = store
        self.config = config
        self.cfg = config.notifier
        self.deliveries = NotificationStore(store)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.cursor: ObjectId | None = None
        self.started = False
        self.reader = EventReader(EventStore(store), config.relay_bound_s, channel="queue",
                                  exclude_names=("summary",), batch=BATCH)
        self.cleaned_at = 0.0
        self._http: AsyncHTTPClient | None = None
        self._type_failures: dict[str, float] = {}
        self._stop = asyncio.Event()  # set by run's stop: finish the send at hand, no more

    @property
    def http(self) -> AsyncHTTPClient:
        if self._http is None:
            self._http = webhook_client(self.cfg)
        return self._http

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        if not await wait_for_database(self.store, stop, "notifier"):
            return

        async def tick() -> float | None:
            return 0.0 if await self.tick() else None  # busy: at once

        try:
            await periodic("the notifier", tick, stop, interval_s=self.cfg.interval_s,
                           logger=log)
        finally:
            if self._http is not None:
                self._http.close()

    async def tick(self) -> bool:
        """Derive and send what is due; True if there may be more to do right away."""
        derived = await self.derive()
        sent = await self.send_due()
        if time.monotonic() - self.cleaned_at > CLEANUP_EVERY_S:
            await self.deliveries.delete_delivered(
                self.clock() - timedelta(days=self.cfg.retention_days))
            self.cleaned_at = time.monotonic()
        return derived >= BATCH or sent >= BATCH

    # Deriving -----------------------------------------------------------------
    async def derive(self) -> int:
        """Deliveries for the events since the cursor; how many events were new."""
        if not self.started:
            self.cursor = await self.deliveries.cursor()  # a seq (see EventReader)
            # first start: catch up on recent history only
            self.reader.start_at(self.cursor or ObjectId.from_datetime(
                self.clock() - timedelta(seconds=FIRST_LOOKBACK_S)))
            self.started = True
        read = 0
        while True:
            events = await self.reader.read(limit=BATCH)
            await self.derive_from(events)
            read += len(events)
            if len(events) < BATCH:
                break
        newest = self.reader.newest
        if newest is not None and newest != self.cursor and (
                self.cursor is None or newest > self.cursor):
            await self.deliveries.advance_cursor(newest)
            self.cursor = newest
        return read

    def _type_rules(self, name: str) -> list[dict[str, Any]]:
        failed_at = self._type_failures.get(name)
        if failed_at is not None and time.monotonic() - failed_at < TYPE_RETRY_S:
            return []
        try:
            job_type = load_job_type(name)
            return job_type_rules(job_type.qualname(), job_type.notifications)
        except Error as exc:
            self._type_failures[name] = time.monotonic()
            log.warning("notifications of %s not loaded: %s", name, exc,
                        extra={"action": "job_type_rules_failed", "job_name": name})
            return []

    def rules_of(self, job: Mapping[str, Any]) -> list[tuple[str, Rule]]:
        """The job's rules with their places (``t<i>`` of the type, ``j<i>`` of the
        enqueue; ``.k`` within a group)."""
        out: list[tuple[str, Rule]] = []
        for prefix, stored in (("t", self._type_rules(str(job.get("name")))),
                               ("j", job.get("notifications") or [])):
            for i, item in enumerate(stored):
                try:
                    rules = expand([item])
                except Error as exc:
                    log.warning("a stored notification rule is invalid: %s", exc,
                                extra={"action": "rule_invalid", "job": str(job.get("_id"))})
                    continue
                if "group" in item:
                    out += [(f"{prefix}{i}.{k}", r) for k, r in enumerate(rules)]
                else:
                    out += [(f"{prefix}{i}", r) for r in rules]
        return out

    async def derive_from(self, events: Iterable[dict[str, Any]]) -> int:
        """Insert the deliveries of these events; how many were new."""
        relevant = [e for e in events if e.get("name") in EVENTS
                    and isinstance((e.get("data") or {}).get("_id"), ObjectId)]
        if not relevant:
            return 0
        typed = sorted({n for n in {str(e["data"].get("name")) for e in relevant}
                        if self._type_rules(n)})
        jobs = await self.deliveries.jobs_with_rules(
            sorted({e["data"]["_id"] for e in relevant}), typed)
        rules_cache: dict[ObjectId, list[tuple[str, Rule]]] = {}
        docs = []
        for event in relevant:
            job_id = event["data"]["_id"]
            job = jobs.get(job_id)
            if job is None:  # no rules of its own, and its type has none (or it is gone)
                if event["data"].get("name") not in typed:
                    continue
                job = {"_id": job_id, **event["data"]}
            if job_id not in rules_cache:
                rules_cache[job_id] = self.rules_of(job)
            for place, rule in rules_cache[job_id]:
                if rule.fires_on(event["name"]):
                    docs.append(await self.delivery(event, job, place, rule))
        return await self.deliveries.add(docs)

    async def language_for(self, rule: Rule, job: Mapping[str, Any]) -> str | None:
        """The recipient's language when known: the rule's, else the first email
        recipient's with a language set, else the enqueuing user's."""
        if rule.language or not rule.languages:
            return rule.language
        if rule.type == "email":
            known = await self.deliveries.languages([*rule.to, *rule.cc, *rule.bcc])
            for address in (*rule.to, *rule.cc, *rule.bcc):
                if address in known:
                    return known[address]
        by = (job.get("enqueued") or {}).get("by")
        return await self.deliveries.user_language(str(by)) if by else None

    async def delivery(self, event: dict[str, Any], job: Mapping[str, Any], place: str,
                       rule: Rule) -> dict[str, Any]:
        now = self.clock()
        key = delivery_id(event["_id"], place)
        language = await self.language_for(rule, job)
        doc: dict[str, Any] = {
            "_id": key, "job_id": job["_id"], "number": job.get("number"),
            "job_name": job.get("name"), "event_id": event["_id"],
            "transition": event["name"], "type": rule.type, "rule": rule.to_document(),
            "language": language, "state": "pending", "attempts": 0,
            "max_attempts": 1 if rule.type == "websocket" else self.cfg.max_attempts,
            "next_at": now, "owner": None, "last_error": None, "created": now,
            "delivered_at": None, "resent": 0, "payload": None}
        try:
            # in a thread: a slow template (bounded by MAX_RENDER_S) never stalls the loop
            doc["payload"] = await asyncio.to_thread(
                render_payload, rule, template_context(event, job), language, key)
        except RenderError as exc:
            doc.update(state="failed", last_error=f"template: {exc}", failed_at=now)
        return doc

    # Sending --------------------------------------------------------------------
    async def send_due(self) -> int:
        """Send due deliveries (``notifier.concurrency`` at a time); how many."""
        sent = 0
        while sent < BATCH and not self._stop.is_set():
            claims = []
            for _ in range(max(1, self.cfg.concurrency)):
                claimed = await self.deliveries.claim(self.owner, self.clock(),
                                                      self.cfg.lease_s)
                if claimed is None:
                    break
                claims.append(claimed)
            if not claims:
                break
            await asyncio.gather(*(self.send(d) for d in claims))
            sent += len(claims)
        return sent

    async def send(self, delivery: dict[str, Any]) -> bool:
        """One attempt at one claimed delivery; True if it got through."""
        error: str | None = None
        retry = True
        try:
            await self._send(delivery)
        except RefusedSend as exc:  # the destination is not allowed: retrying cannot help
            error, retry = str(exc), False
        except SendError as exc:
            error = str(exc)
        except Exception as exc:  # the database, or a malformed delivery: retried, then failed
            error = f"{type(exc).__name__}: {exc}"
        fields = outcome(delivery, error, self.clock(), self.cfg.backoff_s, retry)
        await self.deliveries.finish(delivery["_id"], self.owner, fields)
        extra = {"delivery": delivery["_id"], "job": str(delivery["job_id"]),
                 "type": delivery["type"], "attempt": delivery["attempts"]}
        if error is None:
            log.info("notification %s (%s) delivered", delivery["_id"], delivery["type"],
                     extra={"action": "notification_delivered", **extra})
        elif fields.get("state") == "failed":
            log.warning("notification %s (%s) failed after %d attempts: %s",
                        delivery["_id"], delivery["type"], delivery["attempts"], error,
                        extra={"action": "notification_failed", **extra})
        else:
            log.info("notification %s (%s) attempt %d failed: %s", delivery["_id"],
                     delivery["type"], delivery["attempts"], error,
                     extra={"action": "notification_retry", **extra})
        return error is None

    async def _send(self, delivery: dict[str, Any]) -> None:
        kind = delivery["type"]
        if delivery.get("payload") is None:
            raise SendError(delivery.get("last_error") or "nothing to send")
        if kind == "webhook":
            await send_webhook(delivery, self.cfg, self.http)
        elif kind == "email":
            await send_email(delivery, self.cfg)
        elif kind == "log":
            await send_log(delivery, self.store)
        elif kind == "websocket":
            await send_websocket(delivery, self.store)
        else:
            raise SendError(f"unknown notification type {kind!r}")


def services(config: Config, store: Store) -> list[Notifier]:
    return [Notifier(store, config)]
