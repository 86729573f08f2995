#!/usr/bin/env python3
"""Benchmark the live event stream (WS /api/v1/event) against a bare Tornado broadcast.

    python scripts/bench_events.py [--url URL] [--clients 100,1000] [--events 50]
                                   [--rate 10] [--procs 4] [--json] [--profile FILE]

For each number of clients N, in the same run and with the same client processes:

1. the baseline: a bare Tornado websocket server (its own process, nothing but a set
   of sockets and ``write_message`` to each) broadcasts the same event messages to N
   clients;
   beside it, the floor of any Python fan-out: the same server writing one frame,
   built once, straight to every client's stream (what monq's fan-out does);
2. monq: ``monq serve`` (its own process) delivers the events written into sys.event
   to N clients subscribed to ``queue``. Half the clients log in as a user who may not
   read the job, so they get every event masked: masking is what monq adds.

First, a change stream of the benchmark's own on sys.event times the database's part
of every monq latency (write, then notification), which no broadcast pays.
Events are written at ``--rate`` a second, ``--events`` a round, each stamped with the
time it was written (bare: sent). The clients are raw-socket websocket readers that do
nothing but read, answer pings and check, spread over ``--procs`` processes. Per
client it checks that every event arrived exactly once, that masked clients saw no
job name, author or args, and that readers saw them; a client the server closes with
4008 (fell too far behind) is counted as such. Latency is from the event's stamp to
its arrival in the client process. Server memory per client is the growth of the
server's resident memory from before the clients connected to after the round,
divided by N. ``--profile`` records the server with py-spy (in the ``dev`` extra)
during the largest round, in the speedscope format.
Without --url it starts an embedded SecantusDB on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

JOB = "bench.jobs.Quarterly"
PASSWORD = "bench-password-123"
VIEWER = "viewer"
MASKED = "UnauthorizedJob"


# Clients: raw-socket websocket readers ------------------------------------------------
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


# The benchmark ----------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_server(url: str, port: int, var: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MONQ_MONGODB_URL": url, "MONQ_MONGODB_EMBEDDED": "never",
           "MONQ_API_PORT": str(port), "MONQ_API_ADMIN_PASSWORD": PASSWORD,
           "MONQ_PATHS_VAR": var, "MONQ_LOG_LEVEL": "WARNING"}
    monq = str(Path(sys.executable).parent / "monq")
    process = subprocess.Popen([monq, "serve"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if "API at" in line:
            threading.Thread(target=process.stdout.read, daemon=True).start()  # drain
            return process
    raise SystemExit("monq serve did not start")


async def api_call(base: str, method: str, path: str, body: dict[str, Any],
                   token: str | None = None) -> dict[str, Any]:
    from tornado.httpclient import AsyncHTTPClient
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    reply = await AsyncHTTPClient().fetch(base + "/api/v1" + path, method=method,
                                          headers=headers, body=json.dumps(body))
    return dict(json.loads(reply.body)["data"])


async def tokens(base: str) -> tuple[str, str]:
    """An admin's token and a token of a user who may not read the job (masked)."""
    admin = str((await api_call(base, "POST", "/login", {
        "username": "admin", "password": PASSWORD}))["token"])
    await api_call(base, "POST", "/roles", {
        "name": VIEWER, "email": "viewer@example.com", "password": PASSWORD,
        "role": ["standard_user"], "perm": []}, admin)
    viewer = str((await api_call(base, "POST", "/login", {
        "username": VIEWER, "password": PASSWORD}))["token"])
    return admin, viewer


def bench_event(number: int) -> dict[str, Any]:
    from bson import ObjectId

    from monq.core.store.events import new_event
    return new_event("enqueue_job", channel="queue", author="admin", data={
        "_id": ObjectId(), "number": number, "name": JOB, "state": "pending",
        "priority": 0, "attempts_left": 1, "args": {"quarter": "Q3", "region": "emea"}})


async def paced(events: int, rate: float, emit: Any) -> tuple[list[str], float]:
    """Emit `events` events at `rate` a second; their ids and the time of the first."""
    ids: list[str] = []
    began = time.time()
    for number in range(events):
        await asyncio.sleep(max(0.0, began + number / rate - time.time()))
        ids.append(await emit(number))
    return ids, began


def figures(result: dict[str, Any], began: float, clients: int) -> dict[str, Any]:
    latencies = result.pop("latencies")
    deliveries = len(latencies)
    span = max(1e-9, result.pop("last_at") - began)
    return {"clients": clients, "p50_ms": round(pct(latencies, .5) * 1000, 1),
            "p99_ms": round(pct(latencies, .99) * 1000, 1),
            "deliveries_per_s": round(deliveries / span), **result}


async def bare_round(clients: Clients, port: int, count: int, events: int,
                     rate: float, publish: str = "/publish") -> dict[str, Any]:
    from tornado.websocket import websocket_connect

    from monq.api.fanout import dumps
    await clients.connect("bare", "127.0.0.1", port,
                          [("/ws", False) for _ in range(count)])  # nothing masked: no checks
    publisher = await websocket_connect(f"ws://127.0.0.1:{port}{publish}")

    async def emit(number: int) -> str:
        event = bench_event(number)
        await publisher.write_message(dumps(event))
        return str(event["_id"])

    ids, began = await paced(events, rate, emit)
    result = await clients.collect("bare", ids, 60)
    publisher.close()
    await clients.close("bare")
    return figures(result, began, count)


async def monq_round(clients: Clients, store: Any, server: subprocess.Popen[str],
                     count: int, events: int, rate: float, baseline_kib: int,
                     profile: str | None) -> dict[str, Any]:
    from monq.core.store.events import EventStore
    store_events = EventStore(store)

    async def emit(number: int) -> str:
        event = bench_event(number)
        await store_events.insert([event])
        return str(event["_id"])

    await clients.reset("monq")
    spy = None
    if profile:
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                "--pid", str(server.pid), "--output", profile,
                                "--format", "speedscope", "--duration",
                                str(int(events / rate) + 5)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ids, began = await paced(events, rate, emit)
    result = await clients.collect("monq", ids, 120)
    if spy is not None:
        spy.wait()
    out = figures(result, began, count)
    out["server_kib_per_client"] = round((rss_kib(server.pid) - baseline_kib) / count, 1)
    out["server_up"] = server.poll() is None
    return out


async def change_stream_hop(store: Any, events: int, rate: float) -> dict[str, float]:
    """The database's part of every monq latency: from writing an event to a change
    stream (like the server's) seeing it, for the same writes at the same pace."""
    from monq.core.store.events import EventStore
    store_events = EventStore(store)
    latencies: list[float] = []
    stream = await store.collection("sys.event").watch([{"$match": {"operationType": "insert"}}])
    try:
        began = time.time()
        for number in range(events):
            await asyncio.sleep(max(0.0, began + number / rate - time.time()))
            event = bench_event(number)
            await store_events.insert([event])
            while (await stream.next())["fullDocument"]["_id"] != event["_id"]:
                pass
            latencies.append(time.time() - event["created"].timestamp())
    finally:
        await stream.close()
    return {"p50_ms": round(pct(latencies, .5) * 1000, 1),
            "p99_ms": round(pct(latencies, .99) * 1000, 1)}


async def run(url: str, counts: list[int], events: int, rate: float, procs: int,
              profile: str | None) -> dict[str, Any]:
    from monq.core.embedded import free_port
    from monq.core.store import Store, with_database
    db_url = with_database(url, f"monq_bench_{uuid.uuid4().hex[:8]}")
    store = Store(db_url, timeout_s=10)
    await store.ensure_indexes()
    port, bare_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    bare_started = multiprocessing.get_context("spawn").Event()
    bare = multiprocessing.get_context("spawn").Process(
        target=run_bare_server, args=(bare_port, bare_started), daemon=True)
    bare.start()
    clients = Clients(procs)
    report: dict[str, Any] = {"events": events, "rate": rate, "client_processes": procs,
                              "rounds": {}}
    with tempfile.TemporaryDirectory() as var:
        server = start_server(db_url, port, var)
        try:
            bare_started.wait(30)
            admin, viewer = await tokens(base)
            hop = report["change_stream"] = await change_stream_hop(store, events, rate)
            print(f"change stream alone (the database's part): p50 {hop['p50_ms']:.1f} ms, "
                  f"p99 {hop['p99_ms']:.1f} ms", file=sys.stderr)
            await asyncio.sleep(1)
            baseline_kib = rss_kib(server.pid)
            connected = 0
            for count in counts:
                baseline = await bare_round(clients, bare_port, count, events, rate)
                floor = await bare_round(clients, bare_port, count, events, rate, "/floor")
                paths = [(f"/api/v1/event?token={viewer if i % 2 else admin}", i % 2 == 1)
                         for i in range(connected, count)]
                await clients.connect("monq", "127.0.0.1", port, paths)
                connected = count
                await asyncio.sleep(1)
                measured = await monq_round(clients, store, server, count, events, rate,
                                            baseline_kib,
                                            profile if count == counts[-1] else None)
                measured["bare_broadcast_p99_ms"] = baseline["p99_ms"]
                measured["bare_broadcast"] = baseline
                measured["shared_frame_floor"] = floor
                measured["p99_vs_bare"] = round(measured["p99_ms"] / max(0.1,
                                                baseline["p99_ms"]), 2)
                report["rounds"][str(count)] = measured
                report["bare_broadcast_p99_ms"] = baseline["p99_ms"]
                print_round(measured)
        finally:
            clients.stop()
            bare.kill()
            server.terminate()
            server.wait(10)
            await store.drop_database()
            await store.close()
    return report


def print_round(r: dict[str, Any]) -> None:
    b = r["bare_broadcast"]
    print(f"{r['clients']:>5} clients  bare broadcast: p50 {b['p50_ms']:.1f} ms, "
          f"p99 {b['p99_ms']:.1f} ms, {b['deliveries_per_s']:,} deliveries/s", file=sys.stderr)
    f = r["shared_frame_floor"]
    print(f"{'':>14}floor (one frame, raw writes): p50 {f['p50_ms']:.1f} ms, "
          f"p99 {f['p99_ms']:.1f} ms, {f['deliveries_per_s']:,} deliveries/s", file=sys.stderr)
    print(f"{'':>14}monq: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
          f"({r['p99_vs_bare']}x bare), {r['deliveries_per_s']:,} deliveries/s, "
          f"{r['server_kib_per_client']} KiB server memory per client", file=sys.stderr)
    print(f"{'':>14}complete {r['complete']}, closed 4008 {r['closed_4008']}, "
          f"closed otherwise {r['closed_other']}, lost {r['lost']}, duplicated "
          f"{r['duplicated']}, leaked {r['leaked']}, wrong view {r['wrong_view']}, "
          f"server up: {r['server_up']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="a MongoDB URL (default: a throw-away SecantusDB)")
    parser.add_argument("--clients", default="100,1000",
                        help="numbers of connected clients (default 100,1000)")
    parser.add_argument("--events", type=int, default=50, help="events a round (default 50)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="events written a second (default 10)")
    parser.add_argument("--procs", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--profile", help="record the server with py-spy during the "
                        "largest round into this file (speedscope format)")
    args = parser.parse_args(argv)
    counts = sorted(int(n) for n in args.clients.split(","))
    from monq.core.embedded import server_for
    with server_for(args.url) as url:
        report = asyncio.run(run(url, counts, args.events, args.rate, args.procs,
                                 args.profile))
    report["machine"] = {"cpus": os.cpu_count(), "load_1m": os.getloadavg()[0],
                         "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
