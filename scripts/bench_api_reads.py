#!/usr/bin/env python3
"""Benchmark the API's listings against the bare indexed query for the same page.

    python scripts/bench_api_reads.py [--url URL] [--jobs 100000] [--pages 40] [--json]

Loads the given number of finished jobs into sys.journal (``insert_many`` straight
into the collection: this measures reading, not finishing) and a hundred into a
second database, then times, one request at a time:

- ``GET /api/v1/jobs?finished=true&per_page=25`` (an admin's first page, with its
  total counted up to ``api.count_limit``) beside the bare indexed query for the same
  page (``find().sort("number").limit(25)`` on sys.journal), and the same call over
  the hundred jobs: the first page should cost the same over both;
- keyset pages (``after=<id>``) at places spread over the journal beside the bare
  query from the same place (``number > n``).

The figures are p50 (and p99) in milliseconds and the ratios API / bare (goal: at
most 3) and large / small. ``--json`` prints one JSON object instead of text.
Without --url it starts an embedded SecantusDB on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from tornado.httpclient import AsyncHTTPClient

from monq.api.server import ApiServer
from monq.core.config import Config
from monq.core.embedded import server_for
from monq.core.store import Store, layout, with_database

NAME = "monq.jobs.example.DummyJob"
PER_PAGE = 25
BATCH = 10_000
PASSWORD = "bench-password"
# A page over 100,000 documents on a loaded embedded server may take long: the bench
# measures it rather than give up at tornado's 20 s
REQUEST_TIMEOUT_S = 600.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


async def load_journal(store: Store, jobs: int) -> None:
    """`jobs` finished jobs, shaped as monq writes them."""
    start = datetime.now(UTC) - timedelta(days=1)
    journal = store.collection(layout.JOURNAL)
    for first in range(0, jobs, BATCH):
        docs = []
        for n in range(first, min(first + BATCH, jobs)):
            at = start + timedelta(milliseconds=n)
            docs.append({
                "_id": ObjectId(), "number": n + 1, "name": NAME, "args": {"n": n},
                "state": "complete", "priority": 0, "attempts": 1, "attempts_left": 0,
                "enqueued": {"at": at, "by": "bench", "origin": "api"}, "query_at": at,
                "locked": None, "progress": {"value": 1.0, "message": None}, "held": False,
                "started_at": at, "finished_at": at, "runtime": 0.0, "result": None})
        await journal.insert_many(docs, ordered=False)


class Api:
    """An API server on a free port over `store`, and an admin's token."""

    def __init__(self, store: Store) -> None:
        self.store = store
        config = Config().with_values(api={"port": 0, "admin_password": PASSWORD,
                                           "database_timeout_s": REQUEST_TIMEOUT_S},
                                      paths={"var": tempfile.mkdtemp(prefix="monq-bench-")})
        self.server = ApiServer(config, store, out=io.StringIO())
        self.stop = asyncio.Event()
        self.http = AsyncHTTPClient(force_instance=True)
        self.token = ""
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Api:
        self.task = asyncio.create_task(self.server.run(self.stop))
        await self.server.started.wait()
        login = await self.http.fetch(self.url("/login"), method="POST", headers={
            "Content-Type": "application/json"}, body=json.dumps(
            {"username": "admin", "password": PASSWORD}))
        self.token = json.loads(login.body)["data"]["token"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.http.close()
        self.stop.set()
        assert self.task is not None
        await self.task

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}/api/v1{path}"

    async def get(self, path: str) -> dict[str, Any]:
        reply = await self.http.fetch(self.url(path), request_timeout=REQUEST_TIMEOUT_S,
                                      headers={"Authorization": f"Bearer {self.token}"})
        body: dict[str, Any] = json.loads(reply.body)
        return body


async def timed(call: Any) -> float:
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


async def first_pages(store: Store, pages: int) -> tuple[list[float], list[float]]:
    journal = store.collection(layout.JOURNAL)
    api_times, bare_times = [], []
    async with Api(store) as api:
        path = f"/jobs?finished=true&per_page={PER_PAGE}"
        await api.get(path)  # warm: the first request logs in the principal's roles
        for _ in range(pages):
            api_times.append(await timed(api.get(path)))
            bare_times.append(await timed(journal.find({}, {"outbox": 0}).sort(
                "number", 1).limit(PER_PAGE).to_list(None)))
    return api_times, bare_times


async def keyset_pages(store: Store, jobs: int, pages: int) -> tuple[list[float], list[float]]:
    journal = store.collection(layout.JOURNAL)
    api_times, bare_times = [], []
    async with Api(store) as api:
        for i in range(pages):
            number = 1 + (i * 7919) % max(1, jobs - PER_PAGE)
            anchor = await journal.find_one({"number": number}, {"_id": 1})
            assert anchor is not None
            path = f"/jobs?finished=true&per_page={PER_PAGE}&after={anchor['_id']}"
            api_times.append(await timed(api.get(path)))
            bare_times.append(await timed(journal.find(
                {"number": {"$gt": number}}, {"outbox": 0}).sort("number", 1).limit(
                PER_PAGE).to_list(None)))
    return api_times, bare_times


async def run(server: str, jobs: int, pages: int) -> dict[str, Any]:
    results: dict[str, Any] = {"jobs": jobs, "per_page": PER_PAGE}
    for label, size in (("small", 100), ("large", jobs)):
        store = Store(with_database(server, f"bench_reads_{uuid.uuid4().hex[:8]}"),
                      timeout_s=60)
        try:
            await store.ensure_indexes()
            await load_journal(store, size)
            api_times, bare_times = await first_pages(store, pages)
            results[label] = {"api_p50_ms": pct(api_times, 0.5),
                              "api_p99_ms": pct(api_times, 0.99),
                              "bare_p50_ms": pct(bare_times, 0.5),
                              "bare_p99_ms": pct(bare_times, 0.99)}
            if label == "large":
                api_times, bare_times = await keyset_pages(store, size, pages)
                results["keyset"] = {"api_p50_ms": pct(api_times, 0.5),
                                     "bare_p50_ms": pct(bare_times, 0.5)}
        finally:
            await store.drop_database()
            await store.close()
    large, small, keyset = results["large"], results["small"], results["keyset"]
    results["ratio"] = large["api_p50_ms"] / large["bare_p50_ms"]
    results["growth"] = large["api_p50_ms"] / small["api_p50_ms"]
    results["keyset_ratio"] = keyset["api_p50_ms"] / keyset["bare_p50_ms"]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="MongoDB server URL (default: embedded SecantusDB)")
    parser.add_argument("--jobs", type=int, default=100_000,
                        help="finished jobs to load (default 100000)")
    parser.add_argument("--pages", type=int, default=40, help="requests timed per figure")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    # a SIGTERM (timeout, Ctrl-C of a wrapper) unwinds like Ctrl-C: the embedded server
    # is stopped on the way out, not left running
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with server_for(args.url) as server:
        results = asyncio.run(run(server, args.jobs, args.pages))
    if args.json:
        print(json.dumps({"server": server, **results}))
        return 0
    print(f"server: {server}")
    for label, size in (("small", 100), ("large", args.jobs)):
        row = results[label]
        print(f"GET /jobs?finished=true&per_page={PER_PAGE} over {size} finished jobs: "
              f"p50 {row['api_p50_ms']:.1f} ms (p99 {row['api_p99_ms']:.1f}); bare indexed "
              f"query p50 {row['bare_p50_ms']:.1f} ms (p99 {row['bare_p99_ms']:.1f})")
    keyset = results["keyset"]
    print(f"keyset pages (after=<id>) over {args.jobs}: p50 {keyset['api_p50_ms']:.1f} ms; "
          f"bare query from the same place p50 {keyset['bare_p50_ms']:.1f} ms")
    print(f"ratio API / bare (first page): {results['ratio']:.2f} (goal <= 3); "
          f"keyset: {results['keyset_ratio']:.2f}; "
          f"{args.jobs} jobs / 100 jobs: {results['growth']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
