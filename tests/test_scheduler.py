"""The scheduler against a real database, driven by an injected clock: exactly one
job per tick with three schedulers at once, crashes at each step, catch-up and
overlap policies, jitter, enable and disable, restarts, job types' schedules."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monq.core.config import Config
from monq.core.errors import Conflict, ValidationError
from monq.core.store import Store, layout
from monq.queue.queue import Queue
from monq.schedule import cron
from monq.schedule.daemon import Scheduler
from monq.schedule.service import Schedules
from tests.queue_fixtures import WORKER

DUMMY = "monq.jobs.example.DummyJob"
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # in the past: the jobs are claimable now


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class Killed(Exception):
    """Stands for a SIGKILL at a chosen point."""


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 - timedelta(seconds=30))


@pytest.fixture
def schedules(store: Store, clock: Clock) -> Schedules:
    return Schedules(store, author="tester", clock=clock)


def scheduler(store: Store, config: Config, clock: Clock, **cfg: Any) -> Scheduler:
    return Scheduler(store, config.with_values(scheduler=cfg) if cfg else config, clock=clock)


async def jobs(store: Store) -> list[dict[str, Any]]:
    docs = []
    for name in (layout.QUEUE, layout.JOURNAL):
        docs += await store.collection(name).find({}).to_list(None)
    return sorted(docs, key=lambda d: d["enqueued"]["tick"])


async def ticks_of(store: Store, schedule: str) -> list[datetime]:
    return [d["enqueued"]["tick"] for d in await jobs(store)
            if d["enqueued"]["schedule"] == schedule]


async def test_three_schedulers_enqueue_exactly_one_job_per_tick(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    await schedules.create({"name": "minutely", "job": DUMMY, "cron": "* * * * *",
                            "overlap": "enqueue"})
    await schedules.create({"name": "odd", "job": DUMMY, "cron": "*/7 * * * *",
                            "overlap": "enqueue", "jitter_s": 40})
    runners = [scheduler(store, config, clock) for _ in range(3)]
    for _ in range(3 * 90):  # an hour and a half, three passes of each a minute
        clock.advance(seconds=20)
        await asyncio.gather(*(r.tick() for r in runners))
    minutely = await ticks_of(store, "minutely")
    expected = [T0 + timedelta(minutes=m) for m in range(90)]
    assert minutely == expected  # every tick, in order, once
    odd = await ticks_of(store, "odd")
    assert odd == sorted(set(odd)) and len(odd) == len(cron.ticks_between(
        "*/7 * * * *", cron.check_zone("UTC"), T0 - timedelta(seconds=1),
        clock.now - timedelta(seconds=40)))
    docs = await jobs(store)
    assert all(d["enqueued"]["origin"] == "scheduler" for d in docs)
    assert len({d["_id"] for d in docs}) == len(docs)
    assert (await schedules.get("minutely")).pending == 0


async def test_jitter_delays_each_tick_within_its_bound(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    created = await schedules.create({"name": "jittery", "job": DUMMY, "cron": "* * * * *",
                                      "jitter_s": 45, "overlap": "enqueue"})
    runner = scheduler(store, config, clock)
    clock.now = T0
    for _ in range(20 * 60):
        clock.advance(seconds=1)
        await runner.tick()
    docs = await jobs(store)
    assert len(docs) >= 19
    for doc in docs:
        delay = (doc["query_at"] - doc["enqueued"]["tick"]).total_seconds()
        assert 0 <= delay < 45
        assert delay == pytest.approx(cron.jitter_s(str(created.id), doc["enqueued"]["tick"],
                                                    45), abs=0.001)
        # not enqueued before its jittered time, and at most a pass later
        late = (doc["enqueued"]["at"] - doc["query_at"]).total_seconds()
        assert 0 <= late <= 1
    assert len({round((d["query_at"] - d["enqueued"]["tick"]).total_seconds())
                for d in docs}) > 5


async def test_a_scheduler_killed_after_claiming_loses_no_tick(
        store: Store, config: Config, clock: Clock, schedules: Schedules,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await schedules.create({"name": "s", "job": DUMMY, "cron": "* * * * *"})
    dying = scheduler(store, config, clock)

    async def killed(*_: Any, **__: Any) -> bool:
        raise Killed

    monkeypatch.setattr(dying, "_enqueue", killed)
    clock.now = T0 + timedelta(seconds=1)
    with pytest.raises(Killed):
        await dying.tick()
    assert (await schedules.get("s")).pending == 1 and await jobs(store) == []
    other = scheduler(store, config, clock)
    clock.advance(seconds=30)  # not yet stale: it may still be enqueueing
    await other.tick()
    assert await jobs(store) == []
    clock.advance(seconds=31)
    await asyncio.gather(other.tick(), scheduler(store, config, clock).tick())
    assert await ticks_of(store, "s") == [T0, T0 + timedelta(minutes=1)]
    assert (await schedules.get("s")).pending == 0


async def test_a_scheduler_killed_after_enqueueing_does_not_enqueue_twice(
        store: Store, config: Config, clock: Clock, schedules: Schedules,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await schedules.create({"name": "s", "job": DUMMY, "cron": "0 * * * *"})
    dying = scheduler(store, config, clock)

    async def killed(*_: Any, **__: Any) -> None:
        raise Killed

    monkeypatch.setattr(dying.schedules, "finish_entry", killed)
    clock.now = T0 + timedelta(seconds=1)
    with pytest.raises(Killed):
        await dying.tick()
    [job] = await jobs(store)
    # the job runs to the end and leaves sys.queue for sys.journal meanwhile
    queue = Queue(store, config)
    claim = await queue.claim(WORKER)
    assert claim is not None and claim.job.id == job["_id"]
    await queue.start(claim.job.id, claim.token)
    await queue.complete(claim.job.id, claim.token)
    assert await store.collection(layout.QUEUE).count_documents({}) == 0
    clock.advance(minutes=5)
    await scheduler(store, config, clock).tick()
    assert await ticks_of(store, "s") == [T0]
    assert (await schedules.get("s")).pending == 0
    assert (await schedules.get("s")).last_job_id == job["_id"]


async def test_restarted_scheduler_continues_where_the_last_one_stopped(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    await schedules.create({"name": "s", "job": DUMMY, "cron": "*/10 * * * *",
                            "overlap": "enqueue", "catchup": "all"})
    clock.now = T0 + timedelta(minutes=5)
    await scheduler(store, config, clock).tick()
    clock.now = T0 + timedelta(minutes=25)  # a new process, after downtime
    await scheduler(store, config, clock).tick()
    await scheduler(store, config, clock).tick()
    assert await ticks_of(store, "s") == [T0, T0 + timedelta(minutes=10),
                                          T0 + timedelta(minutes=20)]


@pytest.mark.parametrize(("policy", "expected_minutes"), [
    ("none", []), ("latest", [50]), ("all", [20, 30, 40, 50])])
async def test_catch_up_policies_after_downtime(
        store: Store, config: Config, clock: Clock, schedules: Schedules, policy: str,
        expected_minutes: list[int]) -> None:
    await schedules.create({"name": "s", "job": DUMMY, "cron": "*/10 * * * *",
                            "catchup": policy, "overlap": "enqueue"})
    runner = scheduler(store, config, clock, catchup_cap=4, grace_s=60)
    clock.now = T0 + timedelta(seconds=2)
    await runner.tick()  # on time
    clock.now = T0 + timedelta(minutes=55)  # down since: five ticks missed
    await runner.tick()
    clock.now = T0 + timedelta(minutes=60, seconds=1)  # back on time
    await runner.tick()
    assert await ticks_of(store, "s") == [T0] + [
        T0 + timedelta(minutes=m) for m in expected_minutes] + [T0 + timedelta(minutes=60)]


async def test_overlap_skip_waits_for_the_previous_job_and_enqueue_does_not(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    await schedules.create({"name": "skip", "job": DUMMY, "cron": "* * * * *",
                            "overlap": "skip"})
    await schedules.create({"name": "pile", "job": DUMMY, "cron": "* * * * *",
                            "overlap": "enqueue"})
    runner = scheduler(store, config, clock)
    queue = Queue(store, config)
    for minute in range(3):  # nothing runs the jobs: they stay queued
        clock.now = T0 + timedelta(minutes=minute, seconds=1)
        await runner.tick()
    assert await ticks_of(store, "skip") == [T0]
    assert len(await ticks_of(store, "pile")) == 3
    skipped = await store.collection(layout.SCHEDULE).find_one({"name": "skip"})
    assert skipped is not None and skipped["last_skipped"] == T0 + timedelta(minutes=2)
    first = (await schedules.get("skip")).last_job_id
    assert first is not None
    claim = await queue.claim(WORKER, exclude_names=[])
    while claim is not None and claim.job.id != first:
        await queue.release(claim.job.id, claim.token, "not this one")
        claim = await queue.claim(WORKER, exclude_names=[])
    assert claim is not None
    await queue.start(first, claim.token)
    clock.now = T0 + timedelta(minutes=3, seconds=1)
    await runner.tick()  # still running: skipped
    assert await ticks_of(store, "skip") == [T0]
    await queue.complete(first, claim.token)
    clock.now = T0 + timedelta(minutes=4, seconds=1)
    await runner.tick()
    assert await ticks_of(store, "skip") == [T0, T0 + timedelta(minutes=4)]


async def test_disabled_schedules_do_not_fire_and_enabling_skips_the_disabled_time(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    await schedules.create({"name": "s", "job": DUMMY, "cron": "* * * * *",
                            "catchup": "all", "overlap": "enqueue"})
    runner = scheduler(store, config, clock)
    clock.now = T0 + timedelta(seconds=1)
    await runner.tick()
    await schedules.enable("s", False)
    for minute in range(1, 10):
        clock.now = T0 + timedelta(minutes=minute, seconds=1)
        await runner.tick()
    assert await ticks_of(store, "s") == [T0]
    clock.now = T0 + timedelta(minutes=10, seconds=30)
    enabled = await schedules.enable("s")
    assert enabled.enabled and enabled.next_tick == T0 + timedelta(minutes=11)
    clock.now = T0 + timedelta(minutes=11, seconds=1)
    await runner.tick()
    assert await ticks_of(store, "s") == [T0, T0 + timedelta(minutes=11)]


async def test_a_schedule_changed_while_planned_is_not_fired_from_the_old_plan(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    created = await schedules.create({"name": "s", "job": DUMMY, "cron": "* * * * *"})
    doc = await store.collection(layout.SCHEDULE).find_one({"_id": created.id})
    assert doc is not None
    await schedules.update("s", created.etag, {"cron": "0 5 * * *"})
    runner = scheduler(store, config, clock)
    assert not await runner.schedules.advance(doc, {"next_tick": T0}, [])
    clock.now = T0 + timedelta(minutes=10)
    await runner.tick()
    assert await jobs(store) == []
    assert (await schedules.get("s")).next_tick == datetime(2026, 1, 6, 5, tzinfo=UTC)


async def test_job_types_schedules_are_synced(
        store: Store, config: Config, clock: Clock, schedules: Schedules,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = scheduler(store, config, clock, job_modules=["tests.scheduled_jobs"])
    await runner.sync_types()
    await runner.sync_types()  # idempotent
    listed = {s.name: s for s in await schedules.all()}
    assert set(listed) == {"tests.scheduled_jobs.Nightly", "tests.scheduled_jobs.EveryMinute"}
    assert any(getattr(r, "action", None) == "type_schedule_refused"
               for r in caplog.records)  # Broken's schedule is not a cron expression
    nightly = listed["tests.scheduled_jobs.Nightly"]
    assert nightly.source == "type" and nightly.cron == "0 3 * * *"
    assert nightly.next_tick == datetime(2026, 1, 6, 3, tzinfo=UTC)
    clock.now = T0 + timedelta(seconds=1)
    await runner.tick()
    assert await ticks_of(store, "tests.scheduled_jobs.EveryMinute") == [T0]

    # its cron comes from the class: refused here, followed when the class changes
    with pytest.raises(ValidationError) as info:
        await schedules.update(nightly.name, None, {"cron": "0 4 * * *"})
    assert info.value.field == "cron"
    with pytest.raises(Conflict, match="disable it instead"):
        await schedules.remove(nightly.name, None)
    tuned = await schedules.update(nightly.name, nightly.etag, {"timezone": "Europe/Berlin",
                                                                "enabled": False})
    assert tuned.timezone == "Europe/Berlin" and not tuned.enabled
    from tests import scheduled_jobs
    monkeypatch.setattr(scheduled_jobs.Nightly, "schedule", "0 5 * * *")
    await runner.sync_types()
    followed = await schedules.get(nightly.name)
    assert followed.cron == "0 5 * * *" and not followed.enabled
    assert followed.next_tick == datetime(2026, 1, 6, 4, tzinfo=UTC)  # 05:00 in Berlin


async def test_a_unique_job_type_already_queued_makes_the_tick_a_skip(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    await Queue(store, config).enqueue("tests.scheduled_jobs.OnlyOne")
    await schedules.create({"name": "s", "job": "tests.scheduled_jobs.OnlyOne",
                            "cron": "* * * * *", "overlap": "enqueue"})
    clock.now = T0 + timedelta(seconds=1)
    await scheduler(store, config, clock).tick()
    doc = await store.collection(layout.SCHEDULE).find_one({"name": "s"})
    assert doc is not None and doc["last_skipped"] == T0 and doc["pending"] == []
    assert await store.collection(layout.QUEUE).count_documents({}) == 1


async def test_an_unknown_job_module_is_logged_not_fatal(
        store: Store, config: Config, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    runner = scheduler(store, config, clock, job_modules=["tests.no_such_module"])
    await runner.sync_types()
    assert any(getattr(r, "action", None) == "sync_failed" for r in caplog.records)


async def test_the_scheduler_service_runs_until_stopped(
        store: Store, config: Config, schedules: Schedules) -> None:
    schedules.clock = lambda: datetime.now(UTC) - timedelta(minutes=2)
    await schedules.create({"name": "s", "job": DUMMY, "cron": "* * * * *"})
    runner = Scheduler(store, config.with_values(scheduler={"interval_s": 0.05}))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    for _ in range(200):
        if await jobs(store):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(await jobs(store)) == 1


async def test_a_broken_schedule_does_not_stop_the_others(
        store: Store, config: Config, clock: Clock, schedules: Schedules,
        caplog: pytest.LogCaptureFixture) -> None:
    await schedules.create({"name": "broken", "job": DUMMY, "cron": "* * * * *"})
    await schedules.create({"name": "fine", "job": DUMMY, "cron": "* * * * *"})
    await store.collection(layout.SCHEDULE).update_one(
        {"name": "broken"}, {"$set": {"timezone": "Gone/Away"}})  # e.g. tzdata changed
    clock.now = T0 + timedelta(seconds=1)
    await scheduler(store, config, clock).tick()
    assert await ticks_of(store, "fine") == [T0]
    assert any(getattr(r, "action", None) == "schedule_failed" for r in caplog.records)


async def test_a_tick_whose_job_type_went_away_is_recorded_not_retried(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    await schedules.create({"name": "s", "job": DUMMY, "cron": "* * * * *"})
    await store.collection(layout.SCHEDULE).update_one(
        {"name": "s"}, {"$set": {"job": "monq.jobs.gone.Job"}})  # a deploy removed it
    clock.now = T0 + timedelta(seconds=1)
    await scheduler(store, config, clock).tick()
    doc = await store.collection(layout.SCHEDULE).find_one({"name": "s"})
    assert doc is not None and doc["pending"] == [] and await jobs(store) == []
    assert "unknown job type 'monq.jobs.gone.Job'" in doc["last_error"]


async def test_schedules_in_a_zone_across_the_autumn_change(
        store: Store, config: Config, clock: Clock, schedules: Schedules) -> None:
    berlin = cron.check_zone("Europe/Berlin")
    clock.now = datetime(2026, 10, 24, 12, tzinfo=UTC)
    await schedules.create({"name": "daily", "job": DUMMY, "cron": "30 2 * * *",
                            "timezone": "Europe/Berlin", "overlap": "enqueue"})
    await schedules.create({"name": "half-hourly", "job": DUMMY, "cron": "*/30 * * * *",
                            "timezone": "Europe/Berlin", "overlap": "enqueue"})
    runner = scheduler(store, config, clock)
    for _ in range(6 * 48):  # two days in steps of ten minutes
        clock.advance(minutes=10)
        await runner.tick()
    daily = [f"{t.astimezone(berlin):%d %H:%M%z}" for t in await ticks_of(store, "daily")]
    assert daily == ["25 02:30+0200", "26 02:30+0100"]  # the repeated 02:30 once
    half = await ticks_of(store, "half-hourly")
    assert len(half) == 96 and len(set(half)) == 96
    assert {b - a for a, b in itertools.pairwise(half)} == {timedelta(minutes=30)}
