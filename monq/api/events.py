"""The live event stream, WS /api/v1/event (DESIGN.md section 8), and GET
/api/v1/event/history.

The handshake is authenticated like every request (token query argument, cookie
or header) before the upgrade, and the Origin must be the server's own or one of
``api.origins``. Client messages:

``{"type": "interest", "data": ["queue", "message", "job:<id>"], "since": "<event id>"}``
    subscribe (replacing earlier interests); with ``since``, the events of those
    channels after that id are replayed from sys.event first, then the stream goes
    live with nothing missed and nothing twice. The reply names the channels
    subscribed and, under ``unknown``, those that are not (no such chat channel in
    ``api.chat_channels``, or a job that is missing or unreadable: the two look
    alike). Names are de-duplicated, at most ``api.ws_max_interests`` are taken, and
    all ``job:<id>`` channels are looked up in one query.
``{"type": "message", "channel": "message", "text": "..."}``
    stored as an event and delivered to the channel's subscribers; needs
    ``api://monq.api.events.message/c``; nobody posts into ``queue``, ``system``
    or ``job:`` channels.

Channels: ``queue`` (job events and ``summary`` events, masked per user),
``job:<id>`` (one job's events and its websocket notifications; needs read
access to the job), ``system``, and the chat channels of ``api.chat_channels``.
Every event is masked by the user's current permissions (see
`monq.queue.visibility`; the hub re-reads them every few seconds), on every
channel: a user who loses read access to a job stops seeing what it is.

Delivery is `monq.api.fanout` (one rendering per distinct view, one write per
socket and turn of the event loop): a client whose socket has not taken what was
sent and falls ``api.ws_send_queue`` frames behind is closed with code 4008; a
revoked or expired token closes it with 4001.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict
from urllib.parse import urlparse

import tornado.websocket
from bson import ObjectId

from monq.api.base import PAGE_DOCS, ApiContext, BaseHandler
from monq.api.fanout import CLOSE_REVOKED, CLOSE_TOO_SLOW, Subscription, dumps, frame, render
from monq.api.stream import EventHub
from monq.core.auth.permissions import Principal, may_call, may_read_job
from monq.core.errors import BadRequest, NotFound, StoreError
from monq.core.ids import object_id
from monq.queue.messages import post_message
from monq.queue.reads import EventReads, JobReads
from monq.queue.visibility import QUEUE_CHANNEL, job_channel, visible

log = logging.getLogger("monq.api")

__all__ = ["CLOSE_REVOKED", "CLOSE_TOO_SLOW", "EventHistoryHandler", "EventSocketHandler"]

SYSTEM_CHANNEL = "system"
RESERVED_CHANNELS = frozenset({QUEUE_CHANNEL, SYSTEM_CHANNEL})
_CHANNEL = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_JOB_CHANNEL = re.compile(r"^job:([0-9a-f]{24})$")
MAX_TEXT = 10_000
REPLAY_PAGE = 1000
POST_PERMISSION = "monq.api.events.message"


class InterestReply(TypedDict):
    type: Literal["interest"]
    data: list[str]
    message: str
    unknown: NotRequired[list[str]]


class ErrorReply(TypedDict):
    type: Literal["error"]
    message: str


def _error(message: str) -> bytes:
    reply: ErrorReply = {"type": "error", "message": message}
    return frame(dumps(reply))


def _interest_reply(channels: list[str], unknown: list[str]) -> bytes:
    reply: InterestReply = {"type": "interest", "data": channels,
                            "message": f"processed interest in {channels}"}
    if unknown:
        reply["unknown"] = unknown
        reply["message"] += f"; unknown channels, not subscribed: {unknown}"
    return frame(dumps(reply))


def parse_channels(value: Any, limit: int) -> list[str]:
    """The distinct channel names of an interest message, in their order; a
    `BadRequest` for a malformed list, a malformed name, or more than `limit`."""
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise BadRequest("interest: 'data' must be a list of channel names")
    channels = list(dict.fromkeys(value))
    if len(channels) > limit:
        raise BadRequest(f"interest: at most {limit} channels in one interest "
                         f"(api.ws_max_interests), got {len(channels)}")
    for channel in channels:
        if channel.startswith("job:") and not _JOB_CHANNEL.match(channel):
            raise BadRequest(f"interest: invalid channel {channel[:80]!r}: a job's channel "
                             f"is job:<its _id, 24 hex digits>")
        if not (_CHANNEL.match(channel) or _JOB_CHANNEL.match(channel)):
            raise BadRequest(f"interest: invalid channel {channel[:80]!r}")
    return channels


class EventSocketHandler(BaseHandler, tornado.websocket.WebSocketHandler):
    """The live event stream (a websocket): subscribe with ``interest`` messages."""

    permission = "monq.api.events.stream"
    summary = "the live event stream (websocket): job events, summaries and messages"

    def initialize(self, ctx: ApiContext) -> None:
        super().initialize(ctx)
        assert ctx.hub is not None, "the event websocket needs the server's event hub"
        self.hub: EventHub = ctx.hub
        self.sub: Subscription | None = None

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

    def get_compression_options(self) -> None:
        # Frames are built once and written to many sockets as they are: no
        # per-connection compression (it would cost one deflate per socket).
        return None

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def open(self, *args: Any, **kwargs: Any) -> None:
        assert self.principal is not None and self.claims is not None
        assert self.ws_connection is not None
        stream = self.ws_connection.stream  # type: ignore[attr-defined]
        assert stream is not None
        self.sub = Subscription(self.principal, self.claims.version, self.claims.expires_at,
                                stream, self.ctx.config.api.ws_send_queue, self._shut)
        self.hub.add(self.sub)
        log.info("event socket opened by %s", self.principal.name,
                 extra={"action": "ws_open", "request_id": self.request_id})

    def on_close(self) -> None:
        if self.sub is not None:
            self.sub.closed = True
            self.hub.discard(self.sub)
        log.info("event socket closed (%s)", self.close_code,
                 extra={"action": "ws_close", "request_id": self.request_id,
                        "code": self.close_code})

    def _shut(self, code: int, reason: str) -> None:
        if self.sub is not None:
            self.hub.discard(self.sub)
        log.info("closing event socket: %s", reason,
                 extra={"action": "ws_shut", "code": code, "request_id": self.request_id})
        self.close(code, reason)

    # Client messages --------------------------------------------------------------
    async def on_message(self, message: str | bytes) -> None:
        sub = self.sub
        assert sub is not None
        try:
            data = json.loads(message)
        except (ValueError, UnicodeDecodeError, RecursionError):
            data = None
        if not isinstance(data, dict):
            return sub.write(_error("messages must be JSON objects"))
        kind = data.get("type")
        try:
            if kind == "interest":
                await self._interest(sub, data)
            elif kind == "message":
                await self._post(sub, data)
            else:
                sub.write(_error(f"unknown message type {kind!r}: use interest or message"))
        except (BadRequest, NotFound) as exc:
            sub.write(_error(exc.message))
        except StoreError as exc:  # the socket stays open; the URL stays out of the reply
            log.warning("event socket message failed: %s", type(exc).__name__,
                        extra={"action": "ws_message_failed", "request_id": self.request_id})
            sub.write(_error(f"{kind}: the database is not answering; try again"))

    async def _interest(self, sub: Subscription, data: dict[str, Any]) -> None:
        channels = parse_channels(data.get("data"), self.ctx.config.api.ws_max_interests)
        since = data.get("since")
        since_id = None if since is None else object_id(
            since, "since", f"interest: 'since' is not an event id: {since!r}")
        known = await self._known(sub.principal, channels)
        unknown = [c for c in channels if c not in known]
        subscribed = sorted(known)
        if since_id is None:
            self.hub.subscribe(sub, subscribed)
            sub.write(_interest_reply(subscribed, unknown))
            return
        sub.hold()  # live events wait while the past is replayed
        self.hub.subscribe(sub, subscribed)
        try:
            sub.write(_interest_reply(subscribed, unknown))
            await self._replay(sub, since_id)
        finally:
            sub.release(2 * self.ctx.config.relay_bound_s)

    async def _known(self, principal: Principal, channels: Sequence[str]) -> set[str]:
        """The channels among `channels` that exist for this user: queue, system, the
        configured chat channels, and ``job:<id>`` of jobs they may read (all job ids
        looked up in one query; a job they may not read is as unknown as a missing one)."""
        chat = set(self.ctx.config.api.chat_channels)
        known = {c for c in channels if c in RESERVED_CHANNELS or c in chat}
        job_ids = {ObjectId(m.group(1)): c for c in channels if (m := _JOB_CHANNEL.match(c))}
        if job_ids:
            names = await JobReads(self.ctx.store).names_of(list(job_ids))
            known |= {job_ids[job_id] for job_id, name in names.items()
                      if may_read_job(principal, name)}
        return known

    async def _replay(self, sub: Subscription, since: ObjectId) -> None:
        events = EventReads(self.ctx.store)
        replayed = sub.replayed
        assert replayed is not None
        while not sub.closed:
            docs = await events.replay(since, sorted(sub.channels), sorted(sub.jobs),
                                       REPLAY_PAGE)
            fresh = [d for d in docs if d["_id"] not in replayed]
            replayed.update(d["_id"] for d in fresh)
            if fresh:  # a page in one write, as fast as the client reads
                sub.write(b"".join(render(d, sub.principal) for d in fresh))
                await sub.drained()
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
        if channel not in self.ctx.config.api.chat_channels:
            raise BadRequest(f"message: unknown channel {channel!r}: the chat channels are "
                             f"{sorted(self.ctx.config.api.chat_channels)} (api.chat_channels)")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise BadRequest(f"message: 'text' must be a string of 1 to {MAX_TEXT} characters")
        await post_message(self.ctx.store, channel, sub.principal.name, text)


class EventHistoryHandler(BaseHandler):
    """Past events and messages of a channel (or one job), as the user may see them;
    ``after`` (an event id) gives only later ones, for clients that poll, ``before``
    only earlier ones. Keyset paging: pass the reply's ``next_before`` as ``before``
    (newest first, the default) or its ``next_after`` as ``after`` (``sort=1``)."""

    permission = "monq.api.events.history"
    summary = "past events and messages, by channel and time range (paginated)"
    query = {"GET": {"channel": str, "start": datetime, "end": datetime, "page": int,
                     "per_page": int, "sort": int, "after": str, "before": str}}
    query_docs = {
        **PAGE_DOCS,
        "sort": "-1 newest first (default), 1 oldest first",
        "after": "only events after this event id; oldest first, the reply's "
                 "``next_after`` pages on",
        "before": "only events before this event id; newest first, the reply's "
                  "``next_before`` pages on",
    }

    async def get(self) -> None:
        page, per_page = self.page_args()
        start, end = self.args.get("start"), self.args.get("end")
        if start and end and end < start:
            raise BadRequest("parameter 'end': before 'start'")
        after, before = (
            None if name not in self.args else object_id(
                self.args[name], name, f"parameter {name!r}: not an event id: "
                                       f"{self.args[name]!r}")
            for name in ("after", "before"))
        newest_first = self.args.get("sort", -1) != 1
        channel = self.args.get("channel")
        # Without a channel: every shared channel (core4 clients ask so).
        channels: list[str] | None = None if channel is None else [channel]
        jobs: list[ObjectId] = []
        match = _JOB_CHANNEL.match(channel or "")
        if match:
            job_id = ObjectId(match.group(1))
            job = await JobReads(self.ctx.store).get(job_id)
            assert self.principal is not None
            if not may_read_job(self.principal, job.name):
                raise NotFound(f"no job {job_id}")
            jobs = [job_id]
            channels = [job_channel(job_id)]
        elif channel is not None and not _CHANNEL.match(channel):
            raise BadRequest(f"parameter 'channel': invalid channel {channel!r}")
        found = await EventReads(self.ctx.store).listing(
            channels, jobs, start=start, end=end, newest_first=newest_first,
            skip=page * per_page, limit=per_page, after=after, before=before,
            count_cap=self.ctx.config.api.count_limit)
        principal = self.principal
        assert principal is not None
        following = None if found.next_key is None else str(found.next_key)
        self.reply_page([visible(d, lambda n: may_read_job(principal, n), principal.is_admin)
                         for d in found.events], found.total, page, per_page,
                        capped=found.capped,
                        **{"next_before" if newest_first else "next_after": following})
