"""What wakes an idle worker's claim loop, read from the changes its stream sees:
how many jobs a change makes claimable (it claims at most that many, so one insert
does not set every idle worker claiming until it finds nothing) and when the next
job is due (it learns that from the change, not from another query)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId

from monq.core.command_count import ENV as COUNT_ENV
from monq.core.command_count import FLUSH_S, read_counts
from monq.core.config import Config
from monq.core.store import Store
from monq.worker.daemon import EMPTY_WAKE_PAUSE_S, Worker
from tests.worker_fixtures import wait_started


def inserted(**fields: Any) -> dict[str, Any]:
    doc = {"_id": ObjectId(), "state": "pending", "pool": "default", "held": False,
           "blocked": False, "query_at": datetime.now(UTC) - timedelta(seconds=1), **fields}
    return {"operationType": "insert", "documentKey": {"_id": doc["_id"]},
            "fullDocument": doc}


def updated(**fields: Any) -> dict[str, Any]:
    return {"operationType": "update", "documentKey": {"_id": ObjectId()},
            "updateDescription": {"updatedFields": fields}}


def claimable(worker: Worker, change: dict[str, Any]) -> int:
    return worker._claimable_in(
        change, change.get("updateDescription", {}).get("updatedFields", {}))


async def test_a_change_makes_at_most_the_jobs_it_names_claimable(
        store: Store, config: Config) -> None:
    worker = Worker(store, config, concurrency=2)
    assert claimable(worker, inserted()) == 1
    # not this worker's, or not yet claimable by anyone
    assert claimable(worker, inserted(pool="reports")) == 0
    assert claimable(worker, inserted(held=True)) == 0
    assert claimable(worker, inserted(blocked=True)) == 0
    # put back to waiting, resumed, freed from its dependencies: one each
    assert claimable(worker, updated(state="pending", locked=None)) == 1
    assert claimable(worker, updated(held=False)) == 1
    assert claimable(worker, updated(blocked=False)) == 1
    # a kill or removal asked for, or a hold, gives no work
    assert claimable(worker, updated(killed_at=datetime.now(UTC))) == 0
    assert claimable(worker, updated(held=True)) == 0
    assert worker._due_at is None


async def test_a_job_due_later_moves_the_next_due_time_up(
        store: Store, config: Config) -> None:
    worker = Worker(store, config, concurrency=2)
    now = datetime.now(UTC)
    later, sooner = now + timedelta(minutes=5), now + timedelta(minutes=1)
    assert claimable(worker, inserted(query_at=later)) == 0
    assert worker._due_at == later
    assert claimable(worker, updated(state="failed", query_at=sooner)) == 0  # a retry
    assert worker._due_at == sooner
    assert claimable(worker, inserted(query_at=later)) == 0
    assert worker._due_at == sooner
    # the embedded server and some drivers hand out naive UTC times
    naive = (now + timedelta(seconds=30)).replace(tzinfo=None)
    assert claimable(worker, inserted(query_at=naive)) == 0
    assert worker._due_at == naive.replace(tzinfo=UTC)


async def test_writes_its_stream_does_not_pass_do_not_set_an_idle_worker_asking(
        store: Store, start_worker, tmp_path: Path) -> None:
    """A server that answers a waiting change stream on any write anywhere (the
    embedded one does) must not get a getMore back for each write of other work:
    the idle worker pauses after such an empty answer. MongoDB answers only with a
    change the stream lets through, so there the count stays near zero anyway."""
    worker = start_worker(**{COUNT_ENV: str(tmp_path)})
    await wait_started(worker)
    await asyncio.sleep(1.0)  # its stream open, its start-up reads done

    def getmores() -> int:
        time.sleep(FLUSH_S * 3)  # each process writes its counts at most this often
        return sum(c.get("getMore", 0) for c in read_counts(tmp_path).values())

    before = await asyncio.to_thread(getmores)
    elsewhere = store.collection("scratch")
    writes, started = 300, time.monotonic()
    for i in range(writes):
        await elsewhere.insert_one({"n": i})
    took_s = time.monotonic() - started
    asked = await asyncio.to_thread(getmores) - before
    # one getMore per pause at most, and a few for the reads around the writes (here
    # 300 writes took 0.25 s; without the pause the worker asked 206 times)
    assert asked <= took_s / EMPTY_WAKE_PAUSE_S + 5, (asked, took_s)
