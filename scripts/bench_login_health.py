#!/usr/bin/env python3
"""How responsive /health stays while clients log in (issue #17, finding 6).

    python scripts/bench_login_health.py [--url URL] [--clients 8] [--rounds 5]

Runs `monq serve` as a separate process and measures the latency of GET /health,
first on an idle server, then while N clients log in again and again (each login
checks an argon2id hash, tens of milliseconds of CPU). Prints both medians and p99s
and their ratio, measured in the same run. With hashing on the event loop the
ratio was ~200x (5 ms to 1 s with 8 clients); with hashing in threads /health waits
only for its share of the CPU. Without --url it starts an embedded SecantusDB.
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
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from monq.core.embedded import free_port, server_for
from monq.core.store import Store, with_database

PASSWORD = "bench-password-123"
SAMPLES = 200


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def start_server(url: str, port: int, var: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MONQ_MONGODB_URL": url, "MONQ_MONGODB_EMBEDDED": "never",
           "MONQ_API_PORT": str(port), "MONQ_API_ADMIN_PASSWORD": PASSWORD,
           "MONQ_PATHS_VAR": var, "MONQ_LOG_LEVEL": "WARNING",
           "MONQ_API_LOGIN_MAX_FAILURES": "1000000"}
    monq = str(Path(sys.executable).parent / "monq")
    process = subprocess.Popen([monq, "serve"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if "API at" in line:
            return process
    raise SystemExit("monq serve did not start")


async def health_latencies(http: AsyncHTTPClient, base: str, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        began = time.perf_counter()
        await http.fetch(base + "/api/v1/health")
        out.append(time.perf_counter() - began)
    return out


async def keep_logging_in(base: str, stop: asyncio.Event, count: list[int]) -> None:
    http = AsyncHTTPClient(force_instance=True)
    body = json.dumps({"username": "admin", "password": PASSWORD})
    try:
        while not stop.is_set():
            await http.fetch(base + "/api/v1/login", method="POST", body=body,
                             headers={"Content-Type": "application/json"})
            count[0] += 1
    finally:
        http.close()


async def run(url: str, clients: int, rounds: int) -> None:
    db_url = with_database(url, f"monq_bench_{uuid.uuid4().hex[:8]}")
    store = Store(db_url, timeout_s=10)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    http = AsyncHTTPClient(force_instance=True)
    with tempfile.TemporaryDirectory() as var:
        server = start_server(db_url, port, var)
        try:
            idle: list[float] = []
            busy: list[float] = []
            logins = [0]
            for _ in range(rounds):
                idle += await health_latencies(http, base, SAMPLES // rounds)
                stop = asyncio.Event()
                tasks = [asyncio.create_task(keep_logging_in(base, stop, logins))
                         for _ in range(clients)]
                await asyncio.sleep(0.5)  # the logins are under way
                busy += await health_latencies(http, base, SAMPLES // rounds)
                stop.set()
                await asyncio.gather(*tasks)
            ratio = statistics.median(busy) / statistics.median(idle)
            print(f"/health idle: p50 {pct(idle, .5) * 1000:.1f} ms, "
                  f"p99 {pct(idle, .99) * 1000:.1f} ms")
            print(f"/health with {clients} clients logging in ({logins[0]} logins): "
                  f"p50 {pct(busy, .5) * 1000:.1f} ms, p99 {pct(busy, .99) * 1000:.1f} ms "
                  f"({ratio:.1f}x idle)")
        finally:
            http.close()
            server.terminate()
            server.wait(10)
            await store.drop_database()
            await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a MongoDB URL (default: a throw-away SecantusDB)")
    parser.add_argument("--clients", type=int, default=8, help="clients logging in")
    parser.add_argument("--rounds", type=int, default=5, help="idle/busy rounds")
    args = parser.parse_args(argv)
    with server_for(args.url) as url:
        asyncio.run(run(url, args.clients, args.rounds))


if __name__ == "__main__":
    main()
