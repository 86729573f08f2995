"""What wakes an idle worker's claim loop, read from the changes its stream sees:
how many jobs a change makes claimable (it claims at most that many, so one insert
does not set every idle worker claiming until it finds nothing) and when the next
job is due (it learns that from the change, not from another query)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from monq.core.config import Config
from monq.core.store import Store
from monq.worker.daemon import Worker


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
