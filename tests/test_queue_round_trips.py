"""The hot path in round trips, counted with pymongo's command monitoring (counts, not
time): a no-op job's whole life, and what a worker's lazily cleared outbox leaves
behind, repaired by the sweep after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import monitoring

from monq.core.config import Config
from monq.core.errors import DatabaseUnavailable, LeaseLost
from monq.core.store import Store, layout
from monq.queue.enqueue import EnqueueRequest
from monq.queue.model import JobRecord
from monq.queue.queue import Claim, Queue, WorkerRef
from monq.queue.states import Action
from monq.queue.sweeping import RELAY_GRACE_S
from monq.queue.worker_actions import CLAIM_SPREAD, spread_picks
from tests.queue_fixtures import DUMMY, WORKER, event_names

# enqueue: insert, relay (its job number from the process's block, see
# tests/test_counters.py; the relayed event is left in the outbox for the claim to
# drop); the worker: claim, complete (with the start folded in), one relay of all its
# events, journal, delete (the last four shared with the other jobs it finished
# meanwhile)
JOB_LIFE_MAX = 7


async def complete_and_flush(worker: Queue, *claims: Any) -> None:
    """Complete the claimed jobs (their starts folded in) as a worker's slots do, at
    once: their completes go out together. Then the write of their events and moves
    (the worker's comes `relay_delay_s` after the first complete)."""
    done = await asyncio.gather(*(worker.complete(c.job.id, c.token, started=worker.started())
                                  for c in claims))
    assert all(record.state == "complete" for record in done)
    await worker.flush_moves()


class Commands(monitoring.CommandListener):
    """The commands sent, by name (the driver's own handshakes and pings left out)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.find_limits: list[int | None] = []  # of the finds in sys.queue

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in ("hello", "isMaster", "ping", "endSessions"):
            name = event.command_name
            if name == "find" and event.command.get(name) == layout.QUEUE:
                self.find_limits.append(event.command.get("limit"))
            if name == "findAndModify" and event.command.get(name) == layout.COUNTER:
                name += ":sys.counter"
            self.names.append(name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def one_claimed(queue: Queue, store: Store, config: Config
                      ) -> tuple[Queue, JobRecord, Claim]:
    """A worker's queue (lazy outbox), a job enqueued, and the worker's claim of it."""
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True)
    job = await queue.enqueue(DUMMY)
    claim = await worker.claim(WORKER)
    assert claim is not None
    return worker, job, claim


async def assert_completed_once(queue: Queue, job_id: ObjectId) -> None:
    """The job ran once to completion: one event of each step, in order."""
    assert await event_names(queue, job_id) == [
        "enqueue_job", "request_start_job", "start_job", "complete_job"]
    assert (await queue.get(job_id)).state == "complete"


@pytest.fixture
async def counted(db_url: str, store: Store) -> AsyncIterator[tuple[Store, Commands]]:
    commands = Commands()
    counted_store = Store(db_url, timeout_s=10, event_listeners=[commands])
    try:
        yield counted_store, commands
    finally:
        await counted_store.close()


async def test_a_no_op_jobs_life_takes_few_round_trips(
        counted: tuple[Store, Commands], config: Config) -> None:
    store, commands = counted
    user = Queue(store, config, author="alice", lazy_enqueue=True)  # as the API does
    # relays wait for the complete however slow the machine (the worker waits 50 ms)
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True, relay_delay_s=60)
    for _ in range(2):  # caches warm
        await user.enqueue(DUMMY)
        first = await worker.claim(WORKER)
        assert first is not None
        await complete_and_flush(worker, first)
    commands.names.clear()

    job = await user.enqueue(DUMMY)
    claim = await worker.claim(WORKER)
    assert claim is not None and claim.job.id == job.id
    await complete_and_flush(worker, claim)

    # the job number came from the process's block (reserved by the first enqueue)
    assert len(commands.names) <= JOB_LIFE_MAX, commands.names
    await assert_completed_once(user, job.id)


async def test_a_lazy_enqueue_leaves_its_relayed_event_for_the_claim(
        counted: tuple[Store, Commands], config: Config) -> None:
    store, commands = counted
    user = Queue(store, config, author="alice", lazy_enqueue=True)
    await user.enqueue(DUMMY)  # a job number in the cache
    commands.names.clear()
    jobs = await user.enqueue_many([EnqueueRequest(DUMMY) for _ in range(3)])
    # the jobs, their events (numbers from the process's block): nothing cleared
    assert commands.names == ["insert", "insert"]
    for job in jobs:
        assert await event_names(user, job.id) == ["enqueue_job"]
        doc = await store.collection(layout.QUEUE).find_one({"_id": job.id})
        assert [e["name"] for e in doc["outbox"]] == ["enqueue_job"]
    # the claim relays what it finds again (sys.event keeps one of each) and the next
    # write drops it
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True)
    claim = await worker.claim(WORKER)
    assert claim is not None
    await worker.flush_events()
    await worker.progress(claim.job.id, claim.token, 0.5)
    doc = await store.collection(layout.QUEUE).find_one({"_id": claim.job.id})
    assert [e["name"] for e in doc["outbox"]] == ["progress_job"]
    await worker.flush_events()
    assert await event_names(user, claim.job.id) == [
        "enqueue_job", "request_start_job", "progress_job"]
    # an eager writer (a user's hold) relays and clears the whole outbox at once
    held = await user.hold(jobs[2].id)
    doc = await store.collection(layout.QUEUE).find_one({"_id": held.id})
    assert doc["outbox"] == []
    assert await event_names(user, held.id) == ["enqueue_job", "hold_job"]


async def test_enqueues_at_the_same_time_share_their_event_inserts(
        counted: tuple[Store, Commands], config: Config) -> None:
    store, commands = counted
    await Queue(store, config, author="alice", lazy_enqueue=True).enqueue(DUMMY)  # numbers
    commands.names.clear()

    async def api_request(i: int) -> None:
        # as the API does: a Queue per request, on the process's one store
        user = Queue(store, config, author=f"user{i}", lazy_enqueue=True)
        job = await user.enqueue(DUMMY)
        assert await event_names(user, job.id) == ["enqueue_job"]  # in when it returns

    await asyncio.gather(*(api_request(i) for i in range(20)))
    # the jobs one insert each, their events together: the first at once, those
    # asked for meanwhile in the next (4 to 11 inserts for the 20 here, by how the
    # server interleaves the requests; one each without it)
    inserts = commands.names.count("insert")
    assert 20 < inserts < 20 + 20, commands.names


async def test_the_sweep_clears_a_backlogs_relayed_enqueue_events_in_bulk(
        counted: tuple[Store, Commands], config: Config) -> None:
    store, commands = counted
    user = Queue(store, config, author="alice", lazy_enqueue=True)
    jobs = await user.enqueue_many([EnqueueRequest(DUMMY) for _ in range(5)])
    later = Queue(store, config, author="sweeper",
                  clock=lambda: datetime.now(UTC) + timedelta(seconds=RELAY_GRACE_S + 1))
    commands.names.clear()
    report = await later.sweep()
    assert report.relayed == 5
    # one read, one insert of all five events (all there already), one update
    assert commands.names[:3] == ["find", "insert", "update"], commands.names
    assert commands.names.count("insert") == 1 and commands.names.count("update") == 1
    for job in jobs:
        assert await event_names(user, job.id) == ["enqueue_job"]
        doc = await store.collection(layout.QUEUE).find_one({"_id": job.id})
        assert doc["outbox"] == []


async def test_a_workers_next_write_clears_what_it_relayed(
        queue: Queue, store: Store, config: Config) -> None:
    worker, job, claim = await one_claimed(queue, store, config)
    await worker.start(job.id, claim.token)
    await worker.flush_events()  # what the worker does RELAY_DELAY_S after a write
    doc = await store.collection(layout.QUEUE).find_one({"_id": job.id})
    # relayed, and left in the outbox for the next write to drop
    assert [e["name"] for e in doc["outbox"]] == ["request_start_job", "start_job"]
    assert await event_names(queue, job.id) == ["enqueue_job", "request_start_job",
                                                "start_job"]
    await worker.progress(job.id, claim.token, 0.5, "half")
    doc = await store.collection(layout.QUEUE).find_one({"_id": job.id})
    assert [e["name"] for e in doc["outbox"]] == ["progress_job"]
    await worker.complete(job.id, claim.token, progress=(0.9, "nearly", {"rows": 9}))
    await worker.flush_moves()
    journal = await store.collection(layout.JOURNAL).find_one({"_id": job.id})
    assert "outbox" not in journal
    events = await queue.events(job.id)
    assert [e["name"] for e in events] == ["enqueue_job", "request_start_job", "start_job",
                                           "progress_job", "progress_job", "complete_job"]
    assert events[4]["data"]["progress"] == 0.9
    assert events[4]["data"]["progress_data"] == {"rows": 9}
    assert journal["progress"]["message"] == "nearly" and journal["progress"]["value"] == 1.0


async def test_a_start_folded_into_the_complete_keeps_its_time_and_place(
        queue: Queue, store: Store, config: Config) -> None:
    worker, job, claim = await one_claimed(queue, store, config)
    started = worker.started()
    done = await worker.complete(job.id, claim.token, started=started)
    await worker.flush_moves()
    # MongoDB keeps milliseconds
    assert done.started_at is not None and abs(done.started_at - started.at) < timedelta(
        milliseconds=1)
    assert (await queue.get(job.id)).runtime is not None
    events = await queue.events(job.id)
    assert [e["name"] for e in events] == ["enqueue_job", "request_start_job", "start_job",
                                           "complete_job"]
    assert events[2]["created"] <= events[3]["created"]


async def test_a_requeue_leaves_the_outbox_empty(
        queue: Queue, store: Store, config: Config) -> None:
    worker, job, claim = await one_claimed(queue, store, config)
    await worker.release(job.id, claim.token, "not here")
    doc = await store.collection(layout.QUEUE).find_one({"_id": job.id})
    assert doc["outbox"] == []
    assert (await event_names(queue, job.id))[-1] == "release_job"


async def test_the_sweep_relays_a_dead_workers_outbox_once(
        queue: Queue, store: Store, config: Config) -> None:
    """A worker dies with relayed events still in its job's outbox, and one it wrote
    but never relayed: the sweep relays the missing one, doubles none, clears both."""
    worker, job, claim = await one_claimed(queue, store, config)
    await worker.start(job.id, claim.token)
    await worker.flush_events()
    # the worker's next write took, and then it died before relaying it
    await worker.jobs.transition(
        job.id, sources=["running"], token=claim.token,
        event=worker.ctx.event(Action.PROGRESS, datetime.now(UTC), progress=0.5),
        set_fields={"progress.value": 0.5})
    later = Queue(store, config, author="sweeper",
                  clock=lambda: datetime.now(UTC) + timedelta(seconds=RELAY_GRACE_S + 1))
    report = await later.sweep()
    assert report.relayed == 3
    names = await event_names(queue, job.id)
    assert names == ["enqueue_job", "request_start_job", "start_job", "progress_job"]
    doc = await store.collection(layout.QUEUE).find_one({"_id": job.id})
    assert doc["outbox"] == []


async def test_jobs_finished_together_go_out_in_one_complete_relay_journal_write_delete(
        counted: tuple[Store, Commands], config: Config) -> None:
    store, commands = counted
    user = Queue(store, config, author="alice", lazy_enqueue=True)
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True, relay_delay_s=60)
    jobs = await user.enqueue_many([EnqueueRequest(DUMMY) for _ in range(3)])
    claims = [await worker.claim(WORKER) for _ in jobs]
    commands.names.clear()
    await complete_and_flush(worker, *claims)
    # one bulk of the three completes, one insert of their events, one insert into
    # the journal, one delete
    assert commands.names == ["update", "insert", "insert", "delete"]
    for job in jobs:
        await assert_completed_once(user, job.id)
        assert (await user.get(job.id)).runtime is not None


async def test_a_complete_another_writer_changed_the_job_for_is_written_alone(
        queue: Queue, store: Store, config: Config) -> None:
    """A kill asked for while the job ran (its event relayed by whoever asked, or left
    in the outbox by one that died before relaying it): the batched complete misses,
    and the complete is written by itself, which returns the job as it is: the
    event left behind goes out with the job's."""
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True, relay_delay_s=60)
    jobs = await queue.enqueue_many([EnqueueRequest(DUMMY) for _ in range(2)])
    claims = [await worker.claim(WORKER) for _ in jobs]
    assert claims[0] is not None and claims[1] is not None
    # a user asked to kill the first and died before relaying the event
    await queue.jobs.transition(
        claims[0].job.id, sources=["running"],
        event=queue.ctx.event(Action.REQUEST_KILL, datetime.now(UTC)),
        set_fields={"killed_at": datetime.now(UTC)})
    await complete_and_flush(worker, *claims)
    await worker.flush_moves()
    assert await event_names(queue, jobs[0].id) == [
        "enqueue_job", "request_start_job", "request_kill_job", "start_job", "complete_job"]
    await assert_completed_once(queue, jobs[1].id)


async def test_a_complete_after_the_sweep_relayed_the_jobs_events_completes_once(
        queue: Queue, store: Store, config: Config) -> None:
    """The sweep relays (and pulls) an event of a running job's outbox, as it does for
    one its worker could not relay in time, behind the worker's back: the worker's
    complete, which sets the outbox as it knows it, completes the job once, and no
    event is lost or doubled."""
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True, relay_delay_s=60)
    job = await queue.enqueue(DUMMY)
    claim = await worker.claim(WORKER)
    assert claim is not None
    running = await store.collection(layout.QUEUE).find_one({"_id": job.id})
    assert running["outbox"]  # the claim's event, its relay waiting
    await queue.jobs.relay_many([running])
    await complete_and_flush(worker, claim)
    await assert_completed_once(queue, job.id)


async def test_a_heartbeat_keeps_a_complete_in_the_bulk(
        counted: tuple[Store, Commands], config: Config) -> None:
    """A heartbeat moves the lease's times and nothing else: the complete after it
    is still the plain update of the bulk, not a write alone that reads the job."""
    store, commands = counted
    queue = Queue(store, config, author="alice", lazy_enqueue=True)
    worker, job, claim = await one_claimed(queue, store, config)
    await worker.heartbeat(WORKER.id, [(claim.job.id, claim.token)])
    commands.names.clear()
    await complete_and_flush(worker, claim)
    assert "findAndModify" not in commands.names, commands.names
    await assert_completed_once(queue, job.id)


async def test_a_worker_keeps_no_note_of_the_jobs_it_finished(
        queue: Queue, store: Store, config: Config) -> None:
    """A worker notes, per job it holds, the events relayed from the job's outbox for
    its next write to drop. Jobs it finished (their events relayed with their move to
    the journal) and jobs it gave back leave no note behind: a worker that runs for
    months holds none for the millions of jobs it ran."""
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True)
    jobs = await queue.enqueue_many([EnqueueRequest(DUMMY) for _ in range(4)])
    claims = await worker.claim_many(WORKER, 4)
    assert len(claims) == 4
    await worker.flush_events()  # the claims' events relayed: noted for the next writes
    assert set(worker.ctx.relayed) == {j.id for j in jobs}
    await worker.release(claims[3].job.id, claims[3].token, "not here")
    await complete_and_flush(worker, *claims[:3])
    for job in jobs[:3]:
        await assert_completed_once(queue, job.id)
    assert worker.ctx.relayed == {}


async def test_a_worker_with_free_slots_claims_several_jobs_in_two_round_trips(
        counted: tuple[Store, Commands], config: Config) -> None:
    store, commands = counted
    user = Queue(store, config, author="alice", lazy_enqueue=True)
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True, relay_delay_s=60)
    low = await user.enqueue(DUMMY)
    urgent = await user.enqueue_many([EnqueueRequest(DUMMY, options={"priority": 5})
                                      for _ in range(3)])
    assert await worker.claim_many(WORKER, 2, pool="elsewhere") == []  # names cached
    commands.names.clear()
    claims = await worker.claim_many(WORKER, 3)
    # the candidates' read and one bulk of conditional updates, nothing read back
    assert commands.names == ["find", "update"], commands.names
    assert [c.job.id for c in claims] == [j.id for j in urgent]  # the most urgent first
    assert len({c.token for c in claims}) == 3  # a lease token each
    await worker.flush_events()
    for claim in claims:
        assert await event_names(user, claim.job.id) == ["enqueue_job", "request_start_job"]
        stored = await user.get(claim.job.id)
        assert stored.state == "running" and stored.attempts_left == 0
        # each lease fences on its own: a write with another job's token misses
    other = claims[1]
    with pytest.raises(LeaseLost):
        await worker.complete(claims[0].job.id, other.token)
    assert [c.job.id for c in await worker.claim_many(WORKER, 3)] == [low.id]
    assert await worker.claim_many(WORKER, 3) == []


async def test_a_bulk_completed_jobs_journal_copy_keeps_its_last_heartbeat(
        queue: Queue, store: Store, config: Config) -> None:
    worker, job, claim = await one_claimed(queue, store, config)
    await asyncio.sleep(0.05)  # the heartbeat comes after the claim
    await worker.heartbeat(WORKER.id, [(claim.job.id, claim.token)])
    lease = (await store.collection(layout.QUEUE).find_one({"_id": job.id}))["locked"]
    assert lease["heartbeat"] > lease["at"]
    await complete_and_flush(worker, claim)
    copy = await store.collection(layout.JOURNAL).find_one({"_id": job.id})
    assert copy["state"] == "complete"
    assert (copy["locked"]["heartbeat"], copy["locked"]["expires"]) \
        == (lease["heartbeat"], lease["expires"])


def rival_takes_one_first(worker: Queue, store: Store, config: Config) -> None:
    """Between the worker's next read of claim candidates and its updates, a rival
    worker takes the first of them (once)."""
    rival = Queue(store, config, author="rival", lazy_outbox=True)
    real = worker.jobs.claim_each

    async def rival_first(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        assert await rival.claim(WorkerRef("rival", "host", 2)) is not None
        worker.jobs.claim_each = real  # type: ignore[method-assign]
        return await real(*args, **kwargs)

    worker.jobs.claim_each = rival_first  # type: ignore[method-assign]


async def test_claims_of_several_jobs_racing_another_worker_take_each_job_once(
        queue: Queue, store: Store, config: Config) -> None:
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True)
    jobs = await queue.enqueue_many([EnqueueRequest(DUMMY) for _ in range(3)])
    rival_takes_one_first(worker, store, config)
    claims = await worker.claim_many(WORKER, 3)
    assert [c.job.id for c in claims] == [j.id for j in jobs[1:]]  # read back by token
    for job in jobs:
        assert (await queue.get(job.id)).state == "running"
        assert (await event_names(queue, job.id)).count("request_start_job") <= 1


async def test_a_claim_of_jobs_seen_inserted_takes_the_most_urgent_by_id_in_one_write(
        counted: tuple[Store, Commands], config: Config) -> None:
    store, commands = counted
    user = Queue(store, config, author="alice", lazy_enqueue=True)
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True)
    plain, held = await user.enqueue_many([EnqueueRequest(DUMMY),
                                           EnqueueRequest(DUMMY, hold=True)])
    urgent, = await user.enqueue_many([EnqueueRequest(DUMMY, options={"priority": 5})])
    seen = [await store.collection(layout.QUEUE).find_one({"_id": j.id})
            for j in (plain, held, urgent)]  # as a change stream shows them inserted
    commands.names.clear()
    commands.find_limits.clear()
    claims = await worker.claim_seen(WORKER, seen, 1)
    assert [c.job.id for c in claims] == [urgent.id]  # the most urgent of them
    # one update, no read of sys.queue (nor findAndModify) before it
    assert commands.find_limits == [] and commands.names.count("update") == 1
    assert "findAndModify" not in commands.names
    running = await user.get(urgent.id)
    assert running.state == "running" and running.locked is not None \
        and running.locked.token == claims[0].token
    # another worker took `plain` meanwhile; a held job is not claimable
    assert await worker.claim(WorkerRef("rival", "host", 2)) is not None
    assert await worker.claim_seen(WORKER, seen, 3) == []
    assert (await user.get(held.id)).state == "pending"
    taken = await user.get(plain.id)
    assert taken.locked is not None and taken.locked.worker == "rival"
    # nor one this worker may not run: not due yet, tags it lacks, another pool
    others = await user.enqueue_many([
        EnqueueRequest(DUMMY, delay_s=60), EnqueueRequest(DUMMY, options={"tags": ["gpu"]}),
        EnqueueRequest(DUMMY, options={"pool": "elsewhere"})])
    seen = [await store.collection(layout.QUEUE).find_one({"_id": j.id}) for j in others]
    assert await worker.claim_seen(WORKER, seen, 3) == []
    assert [c.job.id for c in await worker.claim_seen(WORKER, seen, 3, tags=["gpu"])] \
        == [others[1].id]


async def test_a_worker_that_lost_a_race_spreads_its_next_claims_over_the_most_urgent(
        counted: tuple[Store, Commands], config: Config) -> None:
    store, commands = counted
    user = Queue(store, config, author="alice", lazy_enqueue=True)
    worker = Queue(store, config, author=WORKER.id, lazy_outbox=True)
    await user.enqueue_many([EnqueueRequest(DUMMY) for _ in range(3)])
    rival_takes_one_first(worker, store, config)
    assert len(await worker.claim_many(WORKER, 3)) == 2  # the race is lost once
    plain = await user.enqueue_many([EnqueueRequest(DUMMY) for _ in range(20)])
    urgent = await user.enqueue_many([EnqueueRequest(DUMMY, options={"priority": 5})
                                      for _ in range(2)])
    commands.find_limits.clear()
    claims = await worker.claim_many(WORKER, 3)
    assert commands.find_limits == [3 * CLAIM_SPREAD]  # it read more candidates than it wants
    # none of a lower priority while a more urgent one it read is left
    assert {c.job.id for c in claims[:2]} == {j.id for j in urgent}
    assert claims[2].job.id in {j.id for j in plain}


def test_spread_picks_keep_priority_order_and_vary_within_a_priority() -> None:
    candidates = ([{"_id": ObjectId(), "priority": 5} for _ in range(2)]
                  + [{"_id": ObjectId(), "priority": 0} for _ in range(8)])
    seen = set()
    for _ in range(200):
        picks = spread_picks(candidates, 4)
        assert picks[:2] == candidates[:2]  # the most urgent, then in claim order
        order = [candidates.index(p) for p in picks]
        assert order == sorted(order) and len(set(order)) == 4
        seen.add(tuple(order))
    assert len(seen) > 10  # 28 pairs to pick from: workers reading the same pick apart
    assert spread_picks(candidates[:3], 4) == candidates[:3]


class FailingOnce:
    """The job store, but the first bulk of completes finds the database gone."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.jobs, name)

    async def transition_unchanged(self, *args: Any, **kwargs: Any) -> set[ObjectId]:
        if not self.failed:
            self.failed = True
            raise DatabaseUnavailable("the database did not answer")
        return await self.jobs.transition_unchanged(*args, **kwargs)


async def test_a_bulk_complete_the_database_missed_is_written_again_once(
        queue: Queue, store: Store, config: Config) -> None:
    """The bulk write of completes fails: each complete's writer hears it (the worker
    tries again while the lease lasts), and the job completes once, one event."""
    worker, job, claim = await one_claimed(queue, store, config)
    worker.jobs = FailingOnce(worker.jobs)  # type: ignore[assignment]
    with pytest.raises(DatabaseUnavailable):
        await worker.complete(job.id, claim.token, started=worker.started())
    assert (await queue.get(job.id)).state == "running"
    done = await worker.complete(job.id, claim.token, started=worker.started())
    assert done.state == "complete"
    await worker.flush_moves()
    await assert_completed_once(queue, job.id)
