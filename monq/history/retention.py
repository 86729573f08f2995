"""Retention of sys.journal, sys.event and sys.log: the cut-off times (pure functions of
``now``) and one bounded pass of deletes.

The pass is run by the active summarizer only (it holds the cluster-wide lease), once per
roll-up. Each collection is deleted in batches of at most `BATCH` documents, at most
`MAX_BATCHES` per pass, so a pass never holds MongoDB for long; a backlog (e.g. the first
pass on an old database) is worked off over the following minutes. The deletes are
idempotent, so a pass cut short by a crash, or run twice across a lease hand-over, loses
nothing that should be kept and deletes nothing twice that matters.

The cut-offs apply to every document, including the events and log lines of a job that is
still in sys.queue: its current state lives in sys.queue itself, and a job queued for
longer than the retention is rare; keeping them would need a per-line look-up of the job
and could stall a pass on a long-running job's lines.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monq.core.config import RetentionConfig
from monq.core.store import Store
from monq.core.store.events import EventStore
from monq.core.store.jobs import JobStore
from monq.core.store.logs import LogStore

log = logging.getLogger("monq.summarizer")

BATCH = 1000
MAX_BATCHES = 10


def cutoff(now: datetime, days: int) -> datetime | None:
    """The time before which documents go, or None to keep them forever (``days == 0``)."""
    if days <= 0:
        return None
    return now - timedelta(days=days)


@dataclass(frozen=True)
class Cutoffs:
    journal: datetime | None
    event: datetime | None
    log: datetime | None


def cutoffs(config: RetentionConfig, now: datetime) -> Cutoffs:
    """The cut-off of each collection at `now`."""
    return Cutoffs(journal=cutoff(now, config.journal_days),
                   event=cutoff(now, config.event_days),
                   log=cutoff(now, config.log_days))


async def _drain(delete: Callable[[datetime, int], Awaitable[int]], before: datetime | None,
                 batch: int, max_batches: int) -> int:
    """Delete in at most `max_batches` batches of `batch`; stop at the first short batch."""
    if before is None:
        return 0
    total = 0
    for _ in range(max_batches):
        deleted = await delete(before, batch)
        total += deleted
        if deleted < batch:
            break
    return total


async def apply_retention(store: Store, config: RetentionConfig, now: datetime, *,
                          batch: int = BATCH, max_batches: int = MAX_BATCHES
                          ) -> dict[str, int]:
    """One bounded pass: delete what is older than each cut-off; the counts deleted."""
    at = cutoffs(config, now)
    counts = {
        "journal": await _drain(JobStore(store).delete_finished_before, at.journal,
                                batch, max_batches),
        "event": await _drain(EventStore(store).delete_before, at.event, batch, max_batches),
        "log": await _drain(LogStore(store).delete_before, at.log, batch, max_batches),
    }
    if any(counts.values()):
        log.info("retention deleted %d journal entries, %d events, %d log lines",
                 counts["journal"], counts["event"], counts["log"],
                 extra={"action": "retention", **counts})
    return counts
