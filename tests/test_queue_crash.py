"""SIGKILL a process between state changes and their events, at random points, many
times; after the sweep every job's events tell its story exactly once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from monq.core.config import Config
from monq.core.store import Store, layout
from monq.queue.queue import Queue
from monq.queue.states import FINAL
from tests.conftest import ROOT, untraced

KILLS = 25
FINAL_EVENTS = {"complete_job", "failed_job", "failed_start", "inactivate_job", "kill_job",
                "remove_job", "reset_job"}


def run_and_kill(db_url: str, rng: random.Random) -> None:
    # untraced: a SIGKILLed child never writes its coverage data (tests/conftest.py)
    with subprocess.Popen([sys.executable, "-m", "tests.crash_worker", db_url], cwd=ROOT,
                          env=untraced(dict(os.environ)),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # two jobs through first, however slow the machine: every run does real work
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["done", "done"]
        time.sleep(rng.uniform(0.05, 0.5))
        proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.chaos
async def test_sigkill_at_random_points_loses_and_doubles_no_event(
        store: Store, db_url: str) -> None:
    rng = random.Random(20261124)
    for _ in range(KILLS):
        run_and_kill(db_url, rng)
    later = datetime.now(UTC) + timedelta(minutes=5)  # past relay grace and lease expiry
    sweeper = Queue(store, Config(), author="sweeper", clock=lambda: later)
    repaired = 0
    for _ in range(20):
        report = await sweeper.sweep()
        repaired += report.relayed + report.moved
        if not (report.relayed or report.moved or report.zombies):
            break
    print("events relayed or moves finished by the sweep:", repaired)
    assert repaired > 0  # some kill did land between a state change and its event

    queue_docs = {d["_id"]: d async for d in store.collection(layout.QUEUE).find()}
    journal_docs = {d["_id"]: d async for d in store.collection(layout.JOURNAL).find()}
    events: dict[object, list[dict]] = {}
    async for event in store.collection(layout.EVENT).find().sort("_id", 1):
        events.setdefault(event["data"]["_id"], []).append(event)
    jobs = queue_docs | journal_docs
    assert len(jobs) > KILLS  # the process got real work done between kills
    assert not set(queue_docs) & set(journal_docs), "a job in both collections"
    assert set(events) <= set(jobs), "events of a job that does not exist"
    for job_id, doc in jobs.items():
        names = [e["name"] for e in events.get(job_id, [])]
        assert not doc.get("outbox"), f"#{doc['number']}: outbox not relayed"
        assert names.count("enqueue_job") == 1 and names[0] == "enqueue_job", names
        assert events[job_id][-1]["data"]["state"] == doc["state"], (doc["number"], names)
        if doc["state"] in FINAL:
            assert job_id in journal_docs
            assert names[-1] in FINAL_EVENTS
            finals = [n for n, e in zip(names, events[job_id], strict=True)
                      if e["data"]["state"] in FINAL]
            assert len(finals) == 1, (doc["number"], names)
        claims = names.count("request_start_job")
        # a defer, a release and a recovery from a lost worker give the attempt back
        recoveries = sum(1 for n, e in zip(names, events[job_id], strict=True)
                         if n == "reset_job" and e["data"]["state"] == "pending")
        assert claims - names.count("defer_job") - names.count("release_job") - \
            recoveries == doc["attempts"] - doc["attempts_left"], (doc["number"], names)
