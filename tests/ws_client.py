"""A small websocket client for tests of WS /api/v1/event over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect


class EventClient:
    opened: list[EventClient] = []

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self.received: list[dict[str, Any]] = []
        EventClient.opened.append(self)

    @classmethod
    async def connect(cls, base_url: str, token: str | None, *, origin: str | None = None,
                      query: str = "") -> EventClient:
        url = base_url.replace("http://", "ws://") + "/api/v1/event"
        params = [p for p in (f"token={token}" if token else "", query) if p]
        if params:
            url += "?" + "&".join(params)
        headers = {"Origin": origin} if origin else {}
        conn = await websocket_connect(HTTPRequest(url, headers=headers), ping_interval=None)
        return cls(conn)

    async def send(self, message: dict[str, Any]) -> None:
        await self.conn.write_message(json.dumps(message))

    async def interest(self, *channels: str, since: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "interest", "data": list(channels)}
        if since is not None:
            message["since"] = since
        await self.send(message)
        return await self.next(lambda m: m.get("type") in ("interest", "error"))

    async def next(self, match: Callable[[dict[str, Any]], bool] = lambda _: True,
                   timeout_s: float = 20) -> dict[str, Any]:
        """The next message that matches (earlier ones are kept in `received`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching message; received {self.received[-5:]}")
            try:
                raw = await asyncio.wait_for(self.conn.read_message(), remaining)
            except TimeoutError:
                raise AssertionError(f"no matching message; received {self.received[-5:]}"
                                     ) from None
            if raw is None:
                raise ConnectionError(f"closed: {self.conn.close_code} {self.conn.close_reason}")
            message = json.loads(raw)
            self.received.append(message)
            if match(message):
                return message

    async def events_until(self, match: Callable[[dict[str, Any]], bool],
                           timeout_s: float = 30) -> list[dict[str, Any]]:
        """Read until a message matches; every event read (in order), that one included."""
        start = len(self.received)
        await self.next(match, timeout_s)
        return [m for m in self.received[start:] if "channel" in m]

    async def closed(self, timeout_s: float = 10) -> tuple[int | None, str | None]:
        """Wait for the server to close; (code, reason)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(self.conn.read_message(),
                                         max(0.01, deadline - time.monotonic()))
            if raw is None:
                return self.conn.close_code, self.conn.close_reason
        raise AssertionError("the server did not close the socket")

    def close(self) -> None:
        self.conn.close()


async def refused(base_url: str, token: str | None, *, origin: str | None = None) -> int:
    """The HTTP status of a handshake the server refuses."""
    try:
        client = await EventClient.connect(base_url, token, origin=origin)
    except HTTPClientError as exc:
        return exc.code
    client.close()
    raise AssertionError("the handshake was accepted")


class StalledClient:
    """A websocket client that subscribes and then reads nothing, with a small receive
    buffer so the kernel cannot absorb what the server sends (a stalled consumer)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, base_url: str, token: str, channels: list[str]) -> StalledClient:
        host, port = base_url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /api/v1/event?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        client = cls(reader, writer)
        client.send_text(json.dumps({"type": "interest", "data": channels}))
        await writer.drain()
        return client

    def send_text(self, text: str) -> None:
        payload = text.encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def close_code(self, timeout_s: float = 60) -> tuple[int, int]:
        """Read everything the server sent until its close frame: (close code, frames
        read before it)."""
        frames = 0
        async with asyncio.timeout(timeout_s):
            while True:
                first, second = await self.reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    length = int.from_bytes(await self.reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await self.reader.readexactly(8), "big")
                payload = await self.reader.readexactly(length)
                if first & 0x0F == 0x8:
                    self.writer.close()
                    return int.from_bytes(payload[:2], "big"), frames
                frames += 1
