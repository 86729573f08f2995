"""Retention of sys.journal, sys.event and sys.log: the cut-offs, the bounded pass of
deletes, and that only the summarizer holding the lease runs it."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from monq.core.config import Config, RetentionConfig, load_config
from monq.core.errors import ConfigError
from monq.core.store import Store, layout
from monq.core.store.history import HistoryStore
from monq.history.daemon import LEASE, Summarizer
from monq.history.retention import apply_retention, cutoff, cutoffs
from monq.queue.queue import Queue, WorkerRef

DUMMY = "monq.jobs.example.DummyJob"
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def id_at(when: datetime) -> ObjectId:
    """An ObjectId made at `when` (as the driver or `event_id` would have made it)."""
    return ObjectId(ObjectId.from_datetime(when).binary[:4] + os.urandom(8))


async def seed(store: Store, *, ages_days: list[float]) -> None:
    """One journal entry, one event and one log line per age (days before NOW)."""
    journal, events, lines = [], [], []
    for number, age in enumerate(ages_days, start=1):
        when = NOW - timedelta(days=age)
        journal.append({"_id": id_at(when), "number": number, "name": DUMMY,
                        "state": "complete", "finished_at": when})
        events.append({"_id": id_at(when), "name": "complete_job", "channel": "queue",
                       "author": None, "created": when, "data": {}})
        lines.append({"_id": id_at(when), "job_id": ObjectId(), "created": when,
                      "level": "INFO", "message": f"{age} days ago"})
    if journal:
        await store.collection(layout.JOURNAL).insert_many(journal)
        await store.collection(layout.EVENT).insert_many(events)
        await store.collection(layout.LOG).insert_many(lines)


async def counts(store: Store) -> dict[str, int]:
    return {name: await store.collection(coll).count_documents({})
            for name, coll in (("journal", layout.JOURNAL), ("event", layout.EVENT),
                               ("log", layout.LOG))}


def test_cutoffs_are_days_before_now_and_zero_keeps_forever() -> None:
    assert cutoff(NOW, 30) == NOW - timedelta(days=30)
    assert cutoff(NOW, 0) is None
    at = cutoffs(RetentionConfig(journal_days=90, event_days=0, log_days=7), NOW)
    assert (at.journal, at.event, at.log) == (NOW - timedelta(days=90), None,
                                              NOW - timedelta(days=7))
    defaults = cutoffs(Config().retention, NOW)
    assert (defaults.journal, defaults.event, defaults.log) == (
        NOW - timedelta(days=90), NOW - timedelta(days=30), NOW - timedelta(days=30))


def test_retention_keys_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "monq.toml"
    path.write_text("[retention]\njournal_days = 365\nlog_days = 0\n")
    config = load_config(path, env={"MONQ_RETENTION_EVENT_DAYS": "14"})
    assert (config.retention.journal_days, config.retention.event_days,
            config.retention.log_days) == (365, 14, 0)


@pytest.mark.parametrize(("text", "env", "origin"), [
    ("[retention]\nevent_days = -1\n", {}, "monq.toml"),
    ("", {"MONQ_RETENTION_LOG_DAYS": "-5"}, "environment MONQ_RETENTION_LOG_DAYS"),
])
def test_negative_days_are_refused_naming_key_and_source(tmp_path: Path, text: str,
                                                         env: dict[str, str],
                                                         origin: str) -> None:
    path = tmp_path / "monq.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    message = str(info.value)
    assert origin in message and "retention." in message and "\n" not in message


async def test_old_documents_go_and_recent_ones_stay(store: Store, config: Config,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # journal keeps 90 days, events and logs 30
    await seed(store, ages_days=[400, 91, 89, 31, 29, 0.5])
    with caplog.at_level(logging.INFO, logger="monq.summarizer"):
        deleted = await apply_retention(store, config.retention, NOW)
    assert deleted == {"journal": 2, "event": 4, "log": 4}
    [record] = [r for r in caplog.records if getattr(r, "action", None) == "retention"]
    assert (record.journal, record.event, record.log) == (2, 4, 4)  # type: ignore[attr-defined]
    journal = await store.collection(layout.JOURNAL).find().sort("finished_at", 1
                                                                 ).to_list(None)
    assert [j["number"] for j in journal] == [3, 4, 5, 6]
    events = await store.collection(layout.EVENT).find().sort("_id", 1).to_list(None)
    assert [e["created"].replace(tzinfo=UTC) for e in events] == [
        NOW - timedelta(days=29), NOW - timedelta(days=0.5)]
    lines = await store.collection(layout.LOG).find().sort("_id", 1).to_list(None)
    assert [line["message"] for line in lines] == ["29 days ago", "0.5 days ago"]
    # a second pass finds nothing more
    assert await apply_retention(store, config.retention, NOW) == {
        "journal": 0, "event": 0, "log": 0}


async def test_zero_keeps_everything(store: Store, config: Config) -> None:
    await seed(store, ages_days=[3650, 400, 91, 31, 1])
    forever = config.with_values(retention={"journal_days": 0, "event_days": 0,
                                            "log_days": 0})
    assert await apply_retention(store, forever.retention, NOW) == {
        "journal": 0, "event": 0, "log": 0}
    assert await counts(store) == {"journal": 5, "event": 5, "log": 5}


async def test_a_pass_deletes_in_bounded_batches(store: Store, config: Config) -> None:
    await seed(store, ages_days=[100 + i for i in range(25)] + [1])
    deleted = await apply_retention(store, config.retention, NOW, batch=10, max_batches=2)
    assert deleted == {"journal": 20, "event": 20, "log": 20}
    assert await counts(store) == {"journal": 6, "event": 6, "log": 6}
    # the oldest go first, and the next pass works off the rest
    oldest = await store.collection(layout.JOURNAL).find_one(sort=[("finished_at", 1)])
    assert oldest is not None and oldest["finished_at"].replace(tzinfo=UTC) == (
        NOW - timedelta(days=104))
    deleted = await apply_retention(store, config.retention, NOW, batch=10, max_batches=2)
    assert deleted == {"journal": 5, "event": 5, "log": 5}
    assert await counts(store) == {"journal": 1, "event": 1, "log": 1}


async def test_journal_entries_with_unrelayed_events_are_kept(store: Store,
                                                              config: Config) -> None:
    old = NOW - timedelta(days=200)
    outbox: list[dict[str, Any]] = [{"_id": id_at(old), "name": "complete_job"}]
    await store.collection(layout.JOURNAL).insert_one(
        {"_id": id_at(old), "number": 1, "name": DUMMY, "state": "complete",
         "finished_at": old, "outbox": outbox})
    assert (await apply_retention(store, config.retention, NOW))["journal"] == 0
    assert await store.collection(layout.JOURNAL).count_documents({}) == 1


async def test_real_job_logs_and_events_expire_before_its_journal_entry(
        store: Store, config: Config) -> None:
    queue = Queue(store, config)
    job = await queue.enqueue(DUMMY)
    claim = await queue.claim(WorkerRef("w", "h", 1))
    assert claim is not None
    await queue.start(claim.job.id, claim.token)
    await queue.append_logs(job.id, [{"created": datetime.now(UTC), "level": "INFO",
                                      "message": "hello", "extra": {}}])
    await queue.complete(claim.job.id, claim.token)
    now = datetime.now(UTC)
    before = await counts(store)
    assert before["journal"] == 1 and before["event"] >= 1 and before["log"] == 1
    assert await apply_retention(store, config.retention, now + timedelta(days=29)) == {
        "journal": 0, "event": 0, "log": 0}
    deleted = await apply_retention(store, config.retention, now + timedelta(days=31))
    assert deleted["journal"] == 0 and deleted["log"] == 1
    assert await counts(store) == {"journal": 1, "event": 0, "log": 0}
    assert (await apply_retention(store, config.retention, now + timedelta(days=91))
            )["journal"] == 1


async def test_only_the_summarizer_holding_the_lease_deletes(store: Store,
                                                             config: Config) -> None:
    await seed(store, ages_days=[400, 1])
    clock = Clock(NOW)
    history = HistoryStore(store)
    assert await history.take_lease(LEASE, "other", NOW, config.summarizer.lease_s)
    standby = Summarizer(store, config, clock=clock, holder="standby")
    await standby.tick()
    assert not standby.active
    assert await counts(store) == {"journal": 2, "event": 2, "log": 2}
    # "other" dies: once its lease has expired the standby takes over and deletes
    clock.now += timedelta(seconds=config.summarizer.lease_s + 1)
    await standby.tick()
    assert standby.active
    remaining = await counts(store)
    assert (remaining["journal"], remaining["log"]) == (1, 1)
    # the recent event stays (the summary event the tick wrote is new too)
    old_events = await store.collection(layout.EVENT).count_documents(
        {"_id": {"$lt": ObjectId.from_datetime(NOW - timedelta(days=30))}})
    assert old_events == 0 and remaining["event"] >= 1
