"""The queue's state as counts: per state, and per job name, state and flags
(DESIGN.md §5); history documents and roll-ups (the masking of rows for users
who may not read a job's name is `monq.queue.visibility.mask_rows`). Pure
functions and a small in-memory model, no I/O.

The model reads documents that other processes wrote, some from clients'
requests: one it cannot use (an id that is not an ObjectId, a name that is not
text, an unknown state) is logged once and skipped, never allowed to stop the
summarizer."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bson import ObjectId

from monq.queue.states import FINAL, State
from monq.queue.visibility import FLAGS, mask_rows

__all__ = ["FLAGS", "Key", "QueueModel", "Summary", "mask_rows", "summarize"]

log = logging.getLogger("monq.summarizer")

WAITING_AND_RUNNING = ("pending", "running", "deferred", "failed")
STATES = frozenset(s.value for s in State)
MAX_REPORTED = 1000  # malformed documents remembered, so each is logged once


@dataclass(frozen=True, order=True)
class Key:
    name: str
    state: str
    zombie: bool = False
    wall: bool = False
    killed: bool = False
    removed: bool = False


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    jobs: tuple[tuple[Key, int], ...]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def rows(self) -> list[dict[str, Any]]:
        return [{"name": k.name, "state": k.state, "n": n, "zombie": k.zombie,
                 "wall": k.wall, "killed": k.killed, "removed": k.removed}
                for k, n in self.jobs]


def summarize(keys: Iterable[Key]) -> Summary:
    counts: dict[str, int] = {}
    jobs: dict[Key, int] = {}
    for key in keys:
        counts[key.state] = counts.get(key.state, 0) + 1
        jobs[key] = jobs.get(key, 0) + 1
    return Summary({s: counts[s] for s in WAITING_AND_RUNNING if counts.get(s)},
                   tuple(sorted(jobs.items())))


@dataclass
class QueueModel:
    """Each queued job's name, state and flags, kept up to date from queue events,
    and the number of jobs per key, so that a summary costs the number of distinct
    keys, not the number of jobs."""

    jobs: dict[ObjectId, Key] = field(default_factory=dict)
    counts: Counter[Key] = field(default_factory=Counter)

    reported: set[Any] = field(default_factory=set)

    def load(self, docs: Iterable[dict[str, Any]]) -> None:
        self.jobs = {}
        for d in docs:
            if not self._usable(d, d.get("_id"), d.get("name"), d.get("state"), "job"):
                continue
            if d["state"] not in FINAL:
                self.jobs[d["_id"]] = Key(d["name"], d["state"], bool(d.get("zombie_at")),
                                          bool(d.get("wall_at")), bool(d.get("killed_at")),
                                          bool(d.get("removed_at")))
        self.counts = Counter(self.jobs.values())

    def _usable(self, doc: dict[str, Any], job_id: Any, name: Any, state: Any,
                kind: str) -> bool:
        """Whether a job or event document can be counted; a malformed one is
        logged (once) and skipped."""
        if isinstance(job_id, ObjectId) and isinstance(name, str) and state in STATES:
            return True
        marker = repr(doc.get("_id"))[:100]
        if marker not in self.reported and len(self.reported) < MAX_REPORTED:
            self.reported.add(marker)
            log.error("skipping a malformed %s document %s", kind, marker,
                      extra={"action": "malformed_document", "kind": kind})
        return False

    def _set(self, job_id: ObjectId, key: Key | None) -> None:
        old = self.jobs.pop(job_id, None)
        if old is not None:
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]
        if key is not None:
            self.jobs[job_id] = key
            self.counts[key] += 1

    def apply(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if not isinstance(data, dict):
            return
        job_id, state = data.get("_id"), data.get("state")
        if job_id is None or state is None:
            return
        if not self._usable(event, job_id, data.get("name", ""), state, "event"):
            return
        if state in FINAL:
            self._set(job_id, None)
            return
        key = self.jobs.get(job_id) or Key(data.get("name", ""), state)
        name = event.get("name")
        if name == "request_start_job":
            key = replace(key, zombie=False, wall=False)
        elif name == "flag_zombie":
            key = replace(key, zombie=True)
        elif name == "flag_nonstop":
            key = replace(key, wall=True)
        elif name == "request_kill_job":
            key = replace(key, killed=True)
        elif name == "request_remove_job":
            key = replace(key, removed=True)
        self._set(job_id, replace(key, state=str(State(state))))

    def summary(self) -> Summary:
        counts: dict[str, int] = {}
        for key, n in self.counts.items():
            counts[key.state] = counts.get(key.state, 0) + n
        return Summary({s: counts[s] for s in WAITING_AND_RUNNING if counts.get(s)},
                       tuple(sorted(self.counts.items())))


def history_document(summary: Summary, created: datetime, resolution: str = "second"
                     ) -> dict[str, Any]:
    """A sys.history document: non-zero state counts, total and the per-job rows."""
    return {"resolution": resolution, "created": created, **summary.counts,
            "total": summary.total, "jobs": summary.rows()}


def summary_of(doc: dict[str, Any]) -> Summary:
    counts = {s: doc[s] for s in WAITING_AND_RUNNING if doc.get(s)}
    jobs = tuple(sorted((Key(r["name"], r["state"], r["zombie"], r["wall"], r["killed"],
                             r["removed"]), r["n"]) for r in doc.get("jobs", [])))
    return Summary(counts, jobs)


def rollup(docs: Iterable[dict[str, Any]], created: datetime, resolution: str
           ) -> dict[str, Any] | None:
    """One document holding the maximum of each count over `docs` (None if empty)."""
    counts: dict[str, int] = {}
    jobs: dict[Key, int] = {}
    total, any_doc = 0, False
    for doc in docs:
        any_doc = True
        summary = summary_of(doc)
        for state, n in summary.counts.items():
            counts[state] = max(counts.get(state, 0), n)
        for key, n in summary.jobs:
            jobs[key] = max(jobs.get(key, 0), n)
        total = max(total, doc.get("total", 0))
    if not any_doc:
        return None
    summary = Summary(counts, tuple(sorted(jobs.items())))
    return {**history_document(summary, created, resolution), "total": total}
