"""The live event stream, WS /api/v1/event (DESIGN.md section 8), and GET
/api/v1/event/history.

The handshake is authenticated like every request (token query argument, cookie
or header) before the upgrade, and the Origin must be the server's own or one of
``api.origins``. Client messages:

``{"type": "interest", "data": ["queue", "message", "job:<id>"], "since": "<event id>"}``
    subscribe (replacing earlier interests); with ``since``, the events of those
    channels after that id are replayed from sys.event first, then the stream goes
    live with nothing missed and nothing twice.
``{"type": "message", "channel": "message", "text": "..."}``
    stored as an event and delivered to the channel's subscribers; needs
    ``api://monq.api.events.message/c``; nobody posts into ``queue``, ``system``
    or ``job:`` channels.

Channels: ``queue`` (job events and ``summary`` events, masked per user),
``job:<id>`` (one job's events and its websocket notifications; needs read
access to the job), ``system``, ``message`` and other named chat channels.

Each connection has a bounded send queue: a client that falls too far behind is
closed with code 4008; a revoked or expired token closes it with 4001.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any, Literal, TypedDict
from urllib.parse import urlparse

import tornado.websocket
from bson import ObjectId
from bson.errors import InvalidId

from monq.api.base import ApiContext, BaseHandler
from monq.api.stream import EventHub, dumps
from monq.core.auth.permissions import Principal, may_call, may_read_job
from monq.core.errors import BadRequest, NotFound
from monq.core.store.events import EventStore, new_event
from monq.queue.queue import Queue
from monq.queue.visibility import (
    QUEUE_CHANNEL,
    SUMMARY_EVENT,
    event_job,
    is_masked,
    job_channel,
    visible,
)

log = logging.getLogger("monq.api")

CLOSE_REVOKED = 4001
CLOSE_TOO_SLOW = 4008
RESERVED_CHANNELS = frozenset({QUEUE_CHANNEL, "system"})
_CHANNEL = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_JOB_CHANNEL = re.compile(r"^job:([0-9a-f]{24})$")
MAX_TEXT = 10_000
REPLAY_PAGE = 1000
DEDUPE_MAX = 10_000
POST_PERMISSION = "monq.api.events.message"


class InterestReply(TypedDict):
    type: Literal["interest"]
    data: list[str]
    message: str


class ErrorReply(TypedDict):
    type: Literal["error"]
    message: str


def _error(message: str) -> str:
    reply: ErrorReply = {"type": "error", "message": message}
    return dumps(reply)


class Interests:
    """A connection's channels, and the job ids behind its ``job:<id>`` channels."""

    def __init__(self, channels: frozenset[str] = frozenset(),
                 jobs: frozenset[ObjectId] = frozenset()) -> None:
        self.channels = channels
        self.jobs = jobs

    def wants(self, event: dict[str, Any]) -> bool:
        if event.get("channel") in self.channels:
            return True
        job_id, _ = event_job(event)
        return job_id is not None and job_id in self.jobs


class Subscription:
    """One connection as the hub sees it: who, what they want, and their bounded
    queue of messages to send."""

    def __init__(self, principal: Principal, token_version: int, expires_at: float,
                 queue_size: int, close: Callable[[int, str], None]) -> None:
        self.principal = principal
        self.token_version = token_version
        self.expires_at = expires_at
        self.interests = Interests()
        self.outbox: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.delivered: OrderedDict[ObjectId, None] = OrderedDict()
        self.held: list[tuple[ObjectId, str]] | None = None  # live events during a replay
        self.closed = False
        self._close = close

    def wants(self, event: dict[str, Any]) -> bool:
        return self.interests.wants(event)

    def may_read(self, name: str) -> bool:
        return may_read_job(self.principal, name)

    def view_key(self, event: dict[str, Any]) -> Hashable:
        """Subscribers with equal keys see an event alike (it is rendered once)."""
        if event.get("channel") != QUEUE_CHANNEL:
            return None
        if event.get("name") == SUMMARY_EVENT:
            return True if self.principal.is_admin else self.principal.permissions
        return is_masked(event, self.may_read)

    def render(self, event: dict[str, Any]) -> str:
        return dumps(visible(event, self.may_read))

    def offer(self, event_id: ObjectId, text: str) -> None:
        if self.closed:
            return
        if self.held is not None:
            self.held.append((event_id, text))
        elif self.first_time(event_id):
            self.send(text)

    def send(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.shut(CLOSE_TOO_SLOW, "too far behind: reconnect with since")

    def first_time(self, event_id: ObjectId) -> bool:
        if event_id in self.delivered:
            return False
        self.delivered[event_id] = None
        if len(self.delivered) > DEDUPE_MAX:
            self.delivered.popitem(last=False)
        return True

    def revoke(self, reason: str) -> None:
        self.shut(CLOSE_REVOKED, reason)

    def shut(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._close(code, reason)


class EventSocketHandler(BaseHandler, tornado.websocket.WebSocketHandler):
    """The live event stream (a websocket): subscribe with ``interest`` messages."""

    permission = "monq.api.events.stream"
    summary = "the live event stream (websocket): job events, summaries and messages"

    def initialize(self, ctx: ApiContext) -> None:
        super().initialize(ctx)
        assert ctx.hub is not None, "the event websocket needs the server's event hub"
        self.hub: EventHub = ctx.hub
        self.sub: Subscription | None = None
        self.sender: asyncio.Task[None] | None = None

    # Handshake ------------------------------------------------------------------
    def check_origin(self, origin: str) -> bool:
        """The server's own origin, or one listed in ``api.origins``: a page of another
        site must not open a socket with the user's cookie."""
        allowed = set(self.ctx.config.api.origins)
        if self.ctx.config.api.public_url:
            public = urlparse(self.ctx.config.api.public_url)
            allowed.add(f"{public.scheme}://{public.netloc}")
        parsed = urlparse(origin)
        if parsed.netloc and parsed.netloc == self.request.host:
            return True
        return f"{parsed.scheme}://{parsed.netloc}" in allowed

    @property
    def ping_interval(self) -> float | None:
        return self.ctx.config.api.ws_ping_interval_s or None

    @property
    def ping_timeout(self) -> float | None:
        return self.ctx.config.api.ws_ping_timeout_s or None

    @property
    def max_message_size(self) -> int:
        return self.ctx.config.api.ws_max_message_bytes

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def open(self, *args: Any, **kwargs: Any) -> None:
        assert self.principal is not None and self.claims is not None
        self.sub = Subscription(self.principal, self.claims.version, self.claims.expires_at,
                                self.ctx.config.api.ws_send_queue, self._shut)
        self.sender = asyncio.create_task(self._send_loop(self.sub))
        self.hub.add(self.sub)
        log.info("event socket opened by %s", self.principal.name,
                 extra={"action": "ws_open", "request_id": self.request_id})

    def on_close(self) -> None:
        if self.sub is not None:
            self.sub.closed = True
            self.hub.discard(self.sub)
        if self.sender is not None:
            self.sender.cancel()
        log.info("event socket closed (%s)", self.close_code,
                 extra={"action": "ws_close", "request_id": self.request_id,
                        "code": self.close_code})

    def _shut(self, code: int, reason: str) -> None:
        if self.sub is not None:
            self.hub.discard(self.sub)
        log.info("closing event socket: %s", reason,
                 extra={"action": "ws_shut", "code": code, "request_id": self.request_id})
        self.close(code, reason)

    async def _send_loop(self, sub: Subscription) -> None:
        try:
            while True:
                text = await sub.outbox.get()
                await self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            pass

    # Client messages --------------------------------------------------------------
    async def on_message(self, message: str | bytes) -> None:
        sub = self.sub
        assert sub is not None
        try:
            data = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            return sub.send(_error("messages must be JSON objects"))
        kind = data.get("type")
        try:
            if kind == "interest":
                await self._interest(sub, data)
            elif kind == "message":
                await self._post(sub, data)
            else:
                sub.send(_error(f"unknown message type {kind!r}: use interest or message"))
        except (BadRequest, NotFound) as exc:
            sub.send(_error(exc.message))

    async def _interest(self, sub: Subscription, data: dict[str, Any]) -> None:
        channels = data.get("data")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise BadRequest("interest: 'data' must be a list of channel names")
        since = data.get("since")
        since_id = None
        if since is not None:
            try:
                since_id = ObjectId(since)
            except (InvalidId, TypeError):
                raise BadRequest(f"interest: 'since' is not an event id: {since!r}") from None
        jobs: set[ObjectId] = set()
        for channel in channels:
            jobs |= await self._check_channel(sub.principal, channel)
        interests = Interests(frozenset(channels), frozenset(jobs))
        reply: InterestReply = {"type": "interest", "data": sorted(channels),
                                "message": f"processed interest in {sorted(channels)}"}
        if since_id is None:
            sub.interests = interests
            sub.send(dumps(reply))
            return
        sub.held = []  # live events wait while the past is replayed
        sub.interests = interests
        try:
            await sub.outbox.put(dumps(reply))
            await self._replay(sub, since_id)
        finally:
            held, sub.held = sub.held, None
            for event_id, text in held or ():
                sub.offer(event_id, text)

    async def _check_channel(self, principal: Principal, channel: str) -> set[ObjectId]:
        match = _JOB_CHANNEL.match(channel)
        if match:
            job_id = ObjectId(match.group(1))
            try:
                job = await Queue(self.ctx.store, self.ctx.config).get(job_id)
            except NotFound:
                job = None
            if job is None or not may_read_job(principal, job.name):
                raise NotFound(f"interest: no job {job_id}")
            return {job_id}
        if not _CHANNEL.match(channel):
            raise BadRequest(f"interest: invalid channel {channel!r}")
        return set()

    async def _replay(self, sub: Subscription, since: ObjectId) -> None:
        events = EventStore(self.ctx.store)
        while not sub.closed:
            docs = await events.replay(since, sorted(sub.interests.channels),
                                       sorted(sub.interests.jobs), REPLAY_PAGE)
            for doc in docs:
                if sub.first_time(doc["_id"]):
                    await sub.outbox.put(sub.render(doc))
            if len(docs) < REPLAY_PAGE:
                return
            since = docs[-1]["_id"]

    async def _post(self, sub: Subscription, data: dict[str, Any]) -> None:
        channel, text = data.get("channel"), data.get("text")
        if not may_call(sub.principal, POST_PERMISSION, "POST"):
            raise BadRequest(f"message: permission denied: api://{POST_PERMISSION}/c")
        if not isinstance(channel, str) or not _CHANNEL.match(channel) \
                or channel in RESERVED_CHANNELS:
            raise BadRequest(f"message: cannot post into channel {channel!r}")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise BadRequest(f"message: 'text' must be a string of 1 to {MAX_TEXT} characters")
        await EventStore(self.ctx.store).insert([new_event(
            "message", channel=channel, author=sub.principal.name, data={"text": text})])


class EventHistoryHandler(BaseHandler):
    """Past events and messages of a channel (or one job), as the user may see them;
    ``after`` (an event id) gives only later ones, for clients that poll."""

    permission = "monq.api.events.history"
    summary = "past events and messages, by channel and time range (paginated)"
    query = {"GET": {"channel": str, "start": datetime, "end": datetime, "page": int,
                     "per_page": int, "sort": int, "after": str}}

    async def get(self) -> None:
        page, per_page = self.page_args()
        start, end = self.args.get("start"), self.args.get("end")
        if start and end and end < start:
            raise BadRequest("parameter 'end': before 'start'")
        after = None
        if "after" in self.args:
            try:
                after = ObjectId(self.args["after"])
            except (InvalidId, TypeError):
                raise BadRequest(f"parameter 'after': not an event id: "
                                 f"{self.args['after']!r}") from None
        channel = self.args.get("channel")
        # Without a channel: every shared channel (core4 clients ask so).
        channels: list[str] | None = None if channel is None else [channel]
        jobs: list[ObjectId] = []
        match = _JOB_CHANNEL.match(channel or "")
        if match:
            job_id = ObjectId(match.group(1))
            job = await Queue(self.ctx.store, self.ctx.config).get(job_id)
            assert self.principal is not None
            if not may_read_job(self.principal, job.name):
                raise NotFound(f"no job {job_id}")
            jobs = [job_id]
            channels = [job_channel(job_id)]
        elif channel is not None and not _CHANNEL.match(channel):
            raise BadRequest(f"parameter 'channel': invalid channel {channel!r}")
        docs, total = await EventStore(self.ctx.store).page(
            channels, jobs, start=start, end=end,
            newest_first=self.args.get("sort", -1) != 1, skip=page * per_page, limit=per_page,
            after=after)
        principal = self.principal
        assert principal is not None
        self.reply_page([visible(d, lambda n: may_read_job(principal, n)) for d in docs],
                        total, page, per_page)
