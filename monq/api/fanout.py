"""Fan-out of one event to many websockets, at close to the cost of a bare broadcast.

Each event costs one rendering (masking, JSON, websocket frame) per distinct view,
not per subscriber: subscribers whose users hold the same permissions share a view,
and an event about a job has at most two (as it is, and masked). Delivering it to a
subscriber appends ready-made frame bytes to that subscriber's list, with no task,
queue or await per subscriber on the way; at the end of the event loop's turn each
socket gets one write of everything for it, so a burst of events (a change stream
batch, a catch-up read) costs one write per socket, not one per event and socket.

A subscriber's socket that cannot take more (its kernel buffer is full) keeps the
frames that follow in a list of its own, and writes them as one batch when the
stream has drained; one that falls ``api.ws_send_queue`` frames behind is closed
with 4008, so one slow socket never holds up the hub or the others.

Which subscribers want an event is looked up, not scanned for: the fan-out indexes
subscribers by channel and by the job ids of their ``job:<id>`` channels.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from bson import ObjectId
from tornado.iostream import IOStream, StreamClosedError

from monq.core import jsonio
from monq.core.auth.permissions import Principal, may_read_job
from monq.queue.visibility import (
    QUEUE_CHANNEL,
    SUMMARY_EVENT,
    channel_job,
    event_job,
    is_about_job,
    visible,
)

log = logging.getLogger("monq.api")

CLOSE_INTERNAL = 1011
CLOSE_REVOKED = 4001
CLOSE_TOO_SLOW = 4008
# Live events held during a replay, as a multiple of api.ws_send_queue, before the
# client counts as too far behind (a replay of a long past may take a while).
HELD_FACTOR = 10
_TEXT_FRAME = 0x81  # FIN and opcode 1 (text), RFC 6455 section 5.2


def dumps(message: Any) -> str:
    """JSON for websocket messages (compact: one frame goes to many sockets)."""
    return jsonio.dumps(message, compact=True)


def frame(text: str) -> bytes:
    """An unmasked, unfragmented websocket text frame (what a server sends) for
    `text`; built once and written to every socket that gets it."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", _TEXT_FRAME, size)
    elif size <= 0xFFFF:
        head = struct.pack("!BBH", _TEXT_FRAME, 126, size)
    else:
        head = struct.pack("!BBQ", _TEXT_FRAME, 127, size)
    return head + payload


def render(event: dict[str, Any], principal: Principal) -> bytes:
    """The frame of `event` as `principal` may see it."""
    return frame(dumps(visible(event, lambda name: may_read_job(principal, name),
                               principal.is_admin)))


class Subscription:
    """One websocket as the hub sees it: whose it is, what it wants, and the frames
    waiting for its socket to drain."""

    def __init__(self, principal: Principal, token_version: int, expires_at: float,
                 stream: IOStream, max_pending: int,
                 close: Callable[[int, str], None]) -> None:
        self.principal = principal
        self.token_version = token_version
        self.expires_at = expires_at
        self.channels: frozenset[str] = frozenset()
        self.jobs: frozenset[ObjectId] = frozenset()
        # Live events that arrive while a replay runs wait here (id, frame).
        self.held: list[tuple[ObjectId, bytes]] | None = None
        # Ids a replay sent, for a while after it, so a live copy is not sent twice.
        self.replayed: set[ObjectId] | None = None
        self._replays = 0
        self.pending: list[bytes] = []
        self.closed = False
        self._stream = stream
        self._max_pending = max_pending
        self._flush_due = False
        self._batch: Batch | None = None
        self._close = close

    # The hot path -----------------------------------------------------------------
    def push(self, event_id: ObjectId, data: bytes) -> None:
        """Send one event's frame (never blocks)."""
        if self.closed:
            return
        if self.held is not None:
            self.held.append((event_id, data))
            if len(self.held) > HELD_FACTOR * self._max_pending:  # a replay that never ends
                self.shut(CLOSE_TOO_SLOW, "too far behind: reconnect with since")
        elif self.replayed is None or event_id not in self.replayed:
            self.write(data)

    def write(self, data: bytes) -> None:
        """Queue frame bytes for this socket: written with the others of this turn of
        the event loop in one write, or, if the socket has not taken the last write
        yet, as one batch when it has."""
        if self.closed:
            return
        pending = self.pending
        pending.append(data)
        if self._flush_due:
            if len(pending) > self._max_pending and self._stream.writing():
                pending.clear()
                self.shut(CLOSE_TOO_SLOW, "too far behind: reconnect with since")
            return
        self._flush_due = True
        if self._batch is not None and not self._stream.writing():
            self._batch.add(self)
        else:
            self._flush()

    def _flush(self, _: Any = None) -> None:
        """Write what is pending as one batch, or wait for the socket to drain."""
        self._flush_due = False
        if self.closed or not self.pending:
            return
        stream = self._stream
        try:
            if stream.writing():  # write(b"") resolves once all written so far has left
                self._flush_due = True
                stream.write(b"").add_done_callback(self._flush)
                return
            batch = b"".join(self.pending)  # many frames, one write
            self.pending.clear()
            stream.write(batch)
        except StreamClosedError:
            self.closed = True

    async def drained(self) -> None:
        """Wait until everything written or kept so far has left (for a replay, which
        sends a page at a time, as fast as the client reads)."""
        while not self.closed and (self.pending or self._stream.writing()):
            try:
                await self._stream.write(b"")
            except StreamClosedError:
                return
            await asyncio.sleep(0)  # let a due flush run first

    # Replay -----------------------------------------------------------------------
    def hold(self) -> None:
        self.held = []
        self.replayed = set()
        self._replays += 1

    def release(self, forget_after_s: float) -> None:
        """End a replay: send the live events held meanwhile that it did not send,
        and remember what it sent for `forget_after_s` (a live event can arrive
        after the replay read it from the database)."""
        held, self.held = self.held or [], None
        for event_id, data in held:
            self.push(event_id, data)
        asyncio.get_running_loop().call_later(forget_after_s, self._forget_replayed,
                                              self._replays)

    def _forget_replayed(self, replay: int) -> None:
        if replay == self._replays:  # not a later replay's ids
            self.replayed = None

    # Ending -----------------------------------------------------------------------
    def revoke(self, reason: str) -> None:
        self.shut(CLOSE_REVOKED, reason)

    def shut(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._close(code, reason)


class Batch:
    """Subscribers with frames to write, written once at the end of this turn of the
    event loop: a burst of events (a change stream batch, a catch-up read) costs one
    write per socket, not one per event and socket."""

    def __init__(self) -> None:
        self.due: list[Subscription] = []

    def add(self, sub: Subscription) -> None:
        if not self.due:
            asyncio.get_running_loop().call_soon(self.flush)
        self.due.append(sub)

    def flush(self) -> None:
        due, self.due = self.due, []
        for sub in due:
            try:
                sub._flush()
            except Exception:  # one broken socket must not leave the others unwritten
                log.exception("writing to an event socket failed",
                              extra={"action": "ws_write_failed"})
                sub.shut(CLOSE_INTERNAL, "internal error")


class Views:
    """One event's frames, rendered once per distinct view and shared."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.about_job = is_about_job(event)
        self.summary = event.get("channel") == QUEUE_CHANNEL \
            and event.get("name") == SUMMARY_EVENT
        self.by_permissions: dict[frozenset[str], bytes] = {}
        self.by_view: dict[Hashable, bytes] = {}
        self.plain: bytes | None = None

    def frame_for(self, principal: Principal) -> bytes:
        data = self.by_permissions.get(principal.permissions)
        if data is None:
            data = self.by_permissions[principal.permissions] = self._render(principal)
        return data

    def _render(self, principal: Principal) -> bytes:
        key: Hashable
        if principal.is_admin or not (self.about_job or self.summary):
            key = "as is"
        elif self.summary:
            key = principal.permissions  # rows masked by name, per permission set
        else:
            _, name = event_job(self.event)
            key = "masked" if name is None or not may_read_job(principal, name) else "as is"
        data = self.by_view.get(key)
        if data is None:
            data = self.by_view[key] = render(self.event, principal)
        return data


class Fanout:
    """Subscribers indexed by channel and by job id, and the delivery of an event to
    the ones that want it."""

    def __init__(self) -> None:
        self.by_channel: dict[str, set[Subscription]] = {}
        self.by_job: dict[ObjectId, set[Subscription]] = {}
        self.batch = Batch()

    def attach(self, sub: Subscription) -> None:
        """Let `sub` batch its writes with the others' (from now until it closes)."""
        sub._batch = self.batch

    def subscribe(self, sub: Subscription, channels: Iterable[str]) -> None:
        """Replace `sub`'s channels (``job:<id>`` ones also index the job's queue
        events)."""
        self.remove(sub)
        sub.channels = frozenset(channels)
        sub.jobs = frozenset(j for j in map(channel_job, sub.channels) if j is not None)
        for channel in sub.channels:
            self.by_channel.setdefault(channel, set()).add(sub)
        for job_id in sub.jobs:
            self.by_job.setdefault(job_id, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        for channel in sub.channels:
            _discard(self.by_channel, channel, sub)
        for job_id in sub.jobs:
            _discard(self.by_job, job_id, sub)

    def deliver(self, event: dict[str, Any]) -> int:
        """Send `event` to every subscriber that wants it; how many got it."""
        subs = self.by_channel.get(event.get("channel"))  # type: ignore[arg-type]
        if self.by_job and event.get("channel") == QUEUE_CHANNEL:
            job_id, _ = event_job(event)
            by_job = self.by_job.get(job_id) if job_id is not None else None
            if by_job:
                subs = subs | by_job if subs else by_job
        if not subs:
            return 0
        event_id = event["_id"]
        views = Views(event)
        for sub in list(subs):  # a push may close a subscriber and change the set
            sub.push(event_id, views.frame_for(sub.principal))
        return len(subs)


def _discard(index: dict[Any, set[Subscription]], key: Any, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]
