#!/usr/bin/env python3
"""Benchmark the live event stream (WS /api/v1/event) against the bare change stream.

    python scripts/bench_events.py [--url URL] [--clients 1,100,1000] [--jobs 50]

Runs `monq serve` as a separate process, connects N websocket clients subscribed to
the `queue` channel, and enqueues jobs one by one: each enqueue is a state change
whose event every client receives. Prints, for each N, the delivery latency from the
state change (the event's `created` time) to the client (p50, p99), deliveries per
second, and the server's resident memory per connected client; beside it, in the same
run, the latency of a bare pymongo change stream on sys.event for the same writes.
The clients share this one process, so at 1,000 clients their own reading is part of
what is measured. Without --url it starts an embedded SecantusDB on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from monq.core.config import Config
from monq.core.embedded import free_port, server_for
from monq.core.store import Store, with_database
from monq.queue.queue import Queue

NAME = "monq.jobs.example.DummyJob"
PASSWORD = "bench-password-123"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_server(url: str, port: int, var: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MONQ_MONGODB_URL": url, "MONQ_MONGODB_EMBEDDED": "never",
           "MONQ_API_PORT": str(port), "MONQ_API_ADMIN_PASSWORD": PASSWORD,
           "MONQ_PATHS_VAR": var, "MONQ_LOG_LEVEL": "WARNING",
           "MONQ_API_WS_SEND_QUEUE": "100000"}
    monq = str(Path(sys.executable).parent / "monq")
    process = subprocess.Popen([monq, "serve"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if "API at" in line:
            return process
    raise SystemExit("monq serve did not start")


async def login(base: str) -> str:
    http = AsyncHTTPClient()
    reply = await http.fetch(base + "/api/v1/login", method="POST",
                             headers={"Content-Type": "application/json"},
                             body=json.dumps({"username": "admin", "password": PASSWORD}))
    return str(json.loads(reply.body)["data"]["token"])


async def connect(base: str, token: str) -> WebSocketClientConnection:
    conn = await websocket_connect(HTTPRequest(
        base.replace("http://", "ws://") + f"/api/v1/event?token={token}"), ping_interval=None)
    await conn.write_message(json.dumps({"type": "interest", "data": ["queue"]}))
    await conn.read_message()  # the interest reply
    return conn


async def receive(conn: WebSocketClientConnection, expected: int,
                  latencies: list[float]) -> None:
    got = 0
    while got < expected:
        raw = await conn.read_message()
        if raw is None:
            raise SystemExit(f"a client was closed: {conn.close_code} {conn.close_reason}")
        event = json.loads(raw)
        if event.get("name") != "enqueue_job":
            continue
        created = datetime.fromisoformat(event["created"])
        latencies.append((datetime.now(UTC) - created).total_seconds())
        got += 1


async def bare_stream(store: Store, queue: Queue, jobs: int) -> list[float]:
    latencies: list[float] = []
    stream = await store.collection("sys.event").watch([{"$match": {"operationType": "insert"}}])
    try:
        for _ in range(jobs):
            await queue.enqueue(NAME)
            while True:
                change = await stream.next()
                doc = change["fullDocument"]
                if doc["name"] == "enqueue_job":
                    latencies.append((datetime.now(UTC) - doc["created"]).total_seconds())
                    break
    finally:
        await stream.close()
    return latencies


async def run(url: str, client_counts: list[int], jobs: int) -> None:
    db_url = with_database(url, f"monq_bench_{uuid.uuid4().hex[:8]}")
    store = Store(db_url, timeout_s=10)
    await store.ensure_indexes()
    queue = Queue(store, Config().with_values(mongodb={"url": db_url}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as var:
        server = start_server(db_url, port, var)
        try:
            token = await login(base)
            bare = await bare_stream(store, queue, jobs)
            print(f"bare change stream: p50 {pct(bare, .5) * 1000:.1f} ms, "
                  f"p99 {pct(bare, .99) * 1000:.1f} ms")
            baseline_kib = rss_kib(server.pid)
            conns: list[WebSocketClientConnection] = []
            for count in client_counts:
                while len(conns) < count:
                    conns.append(await connect(base, token))
                await asyncio.sleep(1)
                per_client_kib = (rss_kib(server.pid) - baseline_kib) / max(1, len(conns))
                latencies: list[float] = []
                readers = [asyncio.create_task(receive(c, jobs, latencies)) for c in conns]
                began = time.perf_counter()
                for _ in range(jobs):
                    await queue.enqueue(NAME)
                await asyncio.gather(*readers)
                elapsed = time.perf_counter() - began
                p50, p99 = pct(latencies, .5), pct(latencies, .99)
                print(f"{count:>5} clients: p50 {p50 * 1000:.1f} ms "
                      f"({p50 / statistics.median(bare):.1f}x bare), p99 {p99 * 1000:.1f} ms, "
                      f"{len(latencies) / elapsed:,.0f} deliveries/s, "
                      f"~{per_client_kib:.0f} KiB server memory per client")
            for conn in conns:
                conn.close()
        finally:
            server.terminate()
            server.wait(10)
            await store.drop_database()
            await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a MongoDB URL (default: a throw-away SecantusDB)")
    parser.add_argument("--clients", default="1,100,1000",
                        help="numbers of connected clients (default 1,100,1000)")
    parser.add_argument("--jobs", type=int, default=50, help="state changes per round")
    args = parser.parse_args(argv)
    counts = sorted(int(n) for n in args.clients.split(","))
    with server_for(args.url) as url:
        asyncio.run(run(url, counts, args.jobs))


if __name__ == "__main__":
    main()


