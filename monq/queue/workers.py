"""Workers as people see them: each worker process with its pool, tags, jobs and the
age of its heartbeat, alive or dead by that age."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monq.core.store import Store
from monq.core.store.workers import WorkerStore

RECENTLY_DEAD_S = 600  # dead workers stay listed this long after their last heartbeat


def worker_view(doc: dict[str, Any], now: datetime, dead_after_s: float) -> dict[str, Any]:
    """One worker document as shown: ``alive`` when its heartbeat is younger than
    `dead_after_s`."""
    age = (now - doc["heartbeat"]).total_seconds()
    return {"_id": doc["_id"], "host": doc.get("host"), "pid": doc.get("pid"),
            "pool": doc.get("pool"), "tags": doc.get("tags", []),
            "concurrency": doc.get("concurrency"), "jobs": doc.get("jobs", []),
            "started_at": doc.get("started_at"), "heartbeat_age_s": age,
            "alive": age < dead_after_s}


async def list_workers(store: Store, now: datetime, dead_after_s: float,
                       recently_dead_s: float = RECENTLY_DEAD_S) -> list[dict[str, Any]]:
    """Live workers and those dead for less than `recently_dead_s`."""
    docs = await WorkerStore(store).list(now - timedelta(seconds=recently_dead_s))
    return [worker_view(d, now, dead_after_s) for d in docs]
