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
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ws_readers import JOB, Clients, run_bare_server

PASSWORD = "bench-password-123"
VIEWER = "viewer"


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
    stream = await store.stream_collection("sys.event").watch(
        [{"$match": {"operationType": "insert"}}])
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
