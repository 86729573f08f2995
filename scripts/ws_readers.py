"""Websocket clients for scripts/bench_events.py (a helper module, not a script):
raw-socket readers that do nothing but read, answer pings and check what they got,
run in client processes that obey the benchmark over a pipe, and the bare Tornado
broadcast server that is the baseline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import struct
import time
from collections.abc import Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

JOB = "bench.jobs.Quarterly"
MASKED = "UnauthorizedJob"


def frame_at(buffer: bytearray, offset: int) -> tuple[int, int, int] | None:
    """(opcode, payload start, payload length) of the whole frame at `offset`, or
    None while it has not all arrived."""
    size = len(buffer)
    if size - offset < 2:
        return None
    opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
    start = offset + 2
    if length == 126:
        if size - offset < 4:
            return None
        length, start = struct.unpack_from("!H", buffer, offset + 2)[0], offset + 4
    elif length == 127:
        if size - offset < 10:
            return None
        length, start = struct.unpack_from("!Q", buffer, offset + 2)[0], offset + 10
    return None if size < start + length else (opcode, start, length)


class Reader(asyncio.Protocol):
    """One websocket client that only reads: handshake, interest, then frames."""

    created_cache: dict[str, float] = {}

    def __init__(self, host: str, port: int, path: str, masked: bool) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: "
                        f"{base64.b64encode(os.urandom(16)).decode()}\r\n"
                        f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.masked = masked
        self.buffer = bytearray()
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        self.reset()

    def reset(self) -> None:
        self.seen: set[str] = set()
        self.duplicates = 0
        self.leaks = 0
        self.wrong_view = 0
        self.latencies: list[float] = []
        self.last_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = -1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed ({self.close_code})"))

    def send(self, opcode: int, payload: bytes) -> None:
        """A masked client frame (RFC 6455 5.3)."""
        assert self.transport is not None and len(payload) < 126
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.upgraded and not self.upgrade():
            return
        buffer, offset = self.buffer, 0
        while (head := frame_at(buffer, offset)) is not None:
            opcode, start, length = head
            payload = bytes(buffer[start:start + length])
            offset = start + length
            if opcode == 1:
                self.on_text(payload, now)
            elif opcode == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                assert self.transport is not None
                self.transport.close()
            elif opcode == 9:
                self.send(10, payload)  # pong
        del buffer[:offset]

    def upgrade(self) -> bool:
        """Read the handshake's answer; then subscribe to the queue."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        if not self.buffer.startswith(b"HTTP/1.1 101"):
            self.ready.set_exception(ConnectionError(bytes(self.buffer[:60]).decode()))
            return False
        del self.buffer[:end + 4]
        self.upgraded = True
        self.send(1, b'{"type":"interest","data":["queue"]}')
        return True

    def on_text(self, payload: bytes, now: float) -> None:
        message = json.loads(payload)
        if message.get("type") == "interest":
            if not self.ready.done():
                self.ready.set_result(None)
            return
        if message.get("name") != "enqueue_job":
            return
        event_id = message["_id"]
        if event_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(event_id)
        created = message["created"]
        stamp = self.created_cache.get(created)
        if stamp is None:
            stamp = self.created_cache[created] = datetime.fromisoformat(created).timestamp()
        self.latencies.append(now - stamp)
        self.last_at = now
        data = message.get("data") or {}
        if self.masked:
            if data.get("name") != MASKED or "args" in data or message.get("author"):
                self.leaks += 1
        elif data.get("name") != JOB:
            self.wrong_view += 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def client_worker(conn: Connection) -> None:
    """A client process: obeys commands from the benchmark over a pipe; its readers
    are in groups (one per server)."""
    loop = asyncio.get_running_loop()
    groups: dict[str, list[Reader]] = {}
    while True:
        command, group, args = await loop.run_in_executor(None, conn.recv)
        readers = groups.setdefault(group, [])
        if command == "connect":
            readers.extend(await connect_readers(*args))
            conn.send(len(readers))
        elif command == "reset":
            for reader in readers:
                reader.reset()
            conn.send(True)
        elif command == "collect":
            conn.send(await collect(readers, *args))
        elif command == "close":
            for reader in readers:
                reader.close()
            readers.clear()
            conn.send(True)
        else:
            return


async def connect_readers(host: str, port: int, paths: Sequence[tuple[str, bool]]
                          ) -> list[Reader]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(20)

    async def one(path: str, masked: bool) -> Reader:
        async with gate:
            _, reader = await loop.create_connection(
                lambda: Reader(host, port, path, masked), host, port)
            await asyncio.wait_for(reader.ready, 60)
            return reader

    return list(await asyncio.gather(*(one(path, masked) for path, masked in paths)))


async def collect(readers: list[Reader], ids: list[str], timeout_s: float) -> dict[str, Any]:
    """Wait until every reader has every event (or was closed); what they saw."""
    expected = set(ids)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(
            len(r.seen) < len(expected) and r.close_code is None for r in readers):
        await asyncio.sleep(0.05)
    out: dict[str, Any] = {"latencies": [], "complete": 0, "closed_4008": 0,
                           "closed_other": 0, "lost": 0, "duplicated": 0, "leaked": 0,
                           "wrong_view": 0, "unexpected": 0, "last_at": 0.0}
    for reader in readers:
        out["latencies"].extend(reader.latencies)
        out["duplicated"] += reader.duplicates
        out["leaked"] += reader.leaks
        out["wrong_view"] += reader.wrong_view
        out["unexpected"] += len(reader.seen - expected)
        out["last_at"] = max(out["last_at"], reader.last_at)
        if reader.close_code == 4008:
            out["closed_4008"] += 1
        elif reader.close_code is not None:
            out["closed_other"] += 1
        elif expected <= reader.seen:
            out["complete"] += 1
        else:
            out["lost"] += len(expected - reader.seen)
    return out


def run_client_process(conn: Connection) -> None:
    asyncio.run(client_worker(conn))


class Clients:
    """The client processes, and the commands they all carry out at once."""

    def __init__(self, procs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        for _ in range(procs):
            mine, theirs = context.Pipe()
            process = context.Process(target=run_client_process, args=(theirs,), daemon=True)
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)

    async def all(self, command: str, group: str, per_process: Sequence[Any]) -> list[Any]:
        for pipe, args in zip(self.pipes, per_process, strict=True):
            pipe.send((command, group, args))
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(None, p.recv)
                                           for p in self.pipes)))

    async def connect(self, group: str, host: str, port: int,
                      paths: list[tuple[str, bool]]) -> None:
        shares = [paths[i::len(self.pipes)] for i in range(len(self.pipes))]
        await self.all("connect", group, [(host, port, share) for share in shares])

    async def reset(self, group: str) -> None:
        await self.all("reset", group, [()] * len(self.pipes))

    async def collect(self, group: str, ids: list[str], timeout_s: float) -> dict[str, Any]:
        parts = await self.all("collect", group, [(ids, timeout_s)] * len(self.pipes))
        total: dict[str, Any] = {"latencies": []}
        for part in parts:
            for key, value in part.items():
                if key == "last_at":
                    total[key] = max(total.get(key, 0.0), value)
                elif key == "latencies":
                    total[key].extend(value)
                else:
                    total[key] = total.get(key, 0) + value
        return total

    async def close(self, group: str) -> None:
        await self.all("close", group, [()] * len(self.pipes))

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send(("quit", "", ()))
        for process in self.processes:
            process.join(10)



# The bare broadcast baseline ----------------------------------------------------------
def run_bare_server(port: int, started: Any) -> None:
    import tornado.web
    import tornado.websocket

    clients: set[tornado.websocket.WebSocketHandler] = set()

    class Client(tornado.websocket.WebSocketHandler):
        def on_message(self, message: str | bytes) -> None:
            clients.add(self)
            self.write_message('{"type":"interest","data":["queue"]}')

        def on_close(self) -> None:
            clients.discard(self)

    class Publisher(tornado.websocket.WebSocketHandler):
        """The bare broadcast: Tornado's ``write_message`` to every client."""

        def on_message(self, message: str | bytes) -> None:
            for client in list(clients):
                try:
                    client.write_message(message)
                except tornado.websocket.WebSocketClosedError:
                    clients.discard(client)

    class FloorPublisher(tornado.websocket.WebSocketHandler):
        """The floor: one frame built once, written to every client's stream."""

        def on_message(self, message: str | bytes) -> None:
            from tornado.iostream import StreamClosedError

            from monq.api.fanout import frame
            data = frame(message if isinstance(message, str) else message.decode())
            for client in list(clients):
                try:
                    client.ws_connection.stream.write(data)  # type: ignore[union-attr]
                except StreamClosedError:
                    clients.discard(client)

    async def main() -> None:
        app = tornado.web.Application([("/ws", Client), ("/publish", Publisher),
                                       ("/floor", FloorPublisher)])
        app.listen(port, "127.0.0.1")
        started.set()
        await asyncio.Event().wait()

    asyncio.run(main())
