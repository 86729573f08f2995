"""The queue under faults: a user's kill racing a worker's write, jobs nobody would
move on, recovery from lost workers, and the sweep's grace for jobs being finished."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monq.core.config import Config
from monq.core.store import Store, layout
from monq.core.store.events import event_id
from monq.queue import sweeping
from monq.queue.queue import FINISH_GRACE_S, Queue
from monq.queue.states import State
from tests.interleave import Interleaved
from tests.queue_fixtures import DUMMY, WORKER, event_names


async def worker_op(queue: Queue, op: str, job_id: object, token: str) -> object:
    if op == "fail":
        return await queue.fail(job_id, token, "boom")  # type: ignore[arg-type]
    if op == "defer":
        return await queue.defer(job_id, token, "later", delay_s=0)  # type: ignore[arg-type]
    return await queue.release(job_id, token, "not here")  # type: ignore[arg-type]


@pytest.mark.parametrize("op", ["fail", "defer", "release"])
@pytest.mark.parametrize("stop", ["kill", "remove"])
@pytest.mark.parametrize("at", [1, 2, 3, 4])
async def test_a_stop_racing_a_workers_requeue_ends_the_job(
        store: Store, config: Config, op: str, stop: str, at: int) -> None:
    """Wherever the user's kill lands in the worker's fail/defer/release, the job
    ends killed (or removed): it is never left waiting with the kill asked for."""
    user = Queue(store, config, author="alice")
    job = await user.enqueue(DUMMY, attempts=2, retry_delay_s=0)
    worker = Queue(store, config, author=WORKER.id)
    claim = await worker.claim(WORKER)
    assert claim is not None
    interleaved = Interleaved(worker.jobs, at, lambda: getattr(user, stop)(job.id))
    worker.jobs = interleaved  # type: ignore[assignment]
    await worker_op(worker, op, job.id, claim.token)
    await interleaved.run_action()  # the kill, if the operation made fewer calls
    assert interleaved.error is None, interleaved.error
    target = State.KILLED if stop == "kill" else State.REMOVED
    final = await user.get(job.id)
    assert final.state == target
    names = await event_names(user, job.id)
    assert names[-1] == f"{stop}_job" and names.count(f"{stop}_job") == 1, names
    assert await store.collection(layout.QUEUE).count_documents({}) == 0


@pytest.mark.parametrize("stop", ["kill", "remove"])
@pytest.mark.parametrize("at", range(1, 8))
async def test_a_stop_racing_the_sweeps_reset_of_a_dead_workers_job_ends_the_job(
        store: Store, config: Config, stop: str, at: int) -> None:
    """Wherever the user's kill lands in the sweep's recovery of a dead worker's job,
    the job ends killed (or removed) by the next sweep at the latest: the reset misses
    when a stop was asked for, so no job is left waiting with one (no index finds
    those; the sweep looks for them only once per process)."""
    user = Queue(store, config, author="alice")
    job = await user.enqueue(DUMMY, attempts=2)
    assert await Queue(store, config, author=WORKER.id).claim(WORKER) is not None
    await store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$set": {"locked.expires": datetime.now(UTC) - timedelta(seconds=1)}})
    sweeper = Queue(store, config, author="sweeper")
    await sweeper.sweep()  # its once-per-process look is behind it
    assert (await sweeper.get(job.id)).state == State.PENDING
    # again, with the stop landing at the `at`-th store call of the sweep
    assert await Queue(store, config, author=WORKER.id).claim(WORKER) is not None
    await store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$set": {"locked.expires": datetime.now(UTC) - timedelta(seconds=1)}})
    plain = sweeper.jobs
    interleaved = Interleaved(plain, at, lambda: getattr(user, stop)(job.id))
    sweeper.jobs = interleaved  # type: ignore[assignment]
    await sweeper.sweep()
    await interleaved.run_action()  # the stop, if the sweep made fewer calls
    assert interleaved.error is None, interleaved.error
    sweeper.jobs = plain
    await sweeper.sweep()
    target = State.KILLED if stop == "kill" else State.REMOVED
    assert (await user.get(job.id)).state == target
    names = await event_names(user, job.id)
    assert names[-1] == f"{stop}_job" and names.count(f"{stop}_job") == 1, names
    assert await store.collection(layout.QUEUE).count_documents({}) == 0


async def test_the_sweep_ends_a_waiting_job_whose_kill_was_asked_for(
        queue: Queue, store: Store) -> None:
    """A job left waiting with ``killed_at`` set (by an older version, or by hand) is
    claimed by no worker: the sweep ends it, in its first pass of the process."""
    killed = await queue.enqueue(DUMMY)
    removed = await queue.enqueue(DUMMY)
    now = datetime.now(UTC)
    await store.collection(layout.QUEUE).update_one(
        {"_id": killed.id}, {"$set": {"state": "failed", "killed_at": now}})
    await store.collection(layout.QUEUE).update_one(
        {"_id": removed.id}, {"$set": {"state": "deferred", "removed_at": now}})
    assert await queue.claim(WORKER) is None
    await queue.sweep()
    assert (await queue.get(killed.id)).state == State.KILLED
    assert (await queue.get(removed.id)).state == State.REMOVED
    assert (await event_names(queue, killed.id))[-1] == "kill_job"
    assert await store.collection(layout.QUEUE).count_documents({}) == 0


async def test_the_sweep_ends_every_waiting_job_with_a_stop_asked_for_in_batches(
        queue: Queue, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """More such jobs than one read takes are all ended in the first pass."""
    monkeypatch.setattr(sweeping, "STOPPED_BATCH", 2)
    jobs = [await queue.enqueue(DUMMY) for _ in range(5)]
    await store.collection(layout.QUEUE).update_many(
        {}, {"$set": {"state": "failed", "killed_at": datetime.now(UTC)}})
    await queue.sweep()
    assert {(await queue.get(j.id)).state for j in jobs} == {State.KILLED}
    assert await store.collection(layout.QUEUE).count_documents({}) == 0


async def test_recovery_from_lost_workers_does_not_use_attempts(
        queue: Queue, store: Store) -> None:
    """A job with one attempt whose worker dies runs again, up to
    ``queue.max_recoveries`` times (each a ``reset_job`` event); then it ends error."""
    job = await queue.enqueue(DUMMY, attempts=1)
    limit = queue.config.queue.max_recoveries
    assert limit == 3
    for recovery in range(1, limit + 2):
        claim = await queue.claim(WORKER)
        assert claim is not None, f"not claimable after {recovery - 1} recoveries"
        await store.collection(layout.QUEUE).update_one(
            {"_id": job.id},
            {"$set": {"locked.expires": datetime.now(UTC) - timedelta(seconds=1)}})
        assert (await queue.sweep()).zombies == 1
        after = await queue.get(job.id)
        if recovery <= limit:
            assert after.state == State.PENDING and after.attempts_left == 1
            assert after.recoveries == recovery
        else:
            assert after.state == State.ERROR
            assert "queue.max_recoveries" in (after.last_error or "")
    events = await queue.events(job.id)
    resets = [e["data"] for e in events if e["name"] == "reset_job"]
    assert [(d["state"], d["recoveries"]) for d in resets] == [
        ("pending", 1), ("pending", 2), ("pending", 3), ("error", 3)]


async def test_max_recoveries_zero_ends_the_job_at_once(store: Store, config: Config) -> None:
    queue = Queue(store, config.with_values(queue={"max_recoveries": 0}), author="tester")
    job = await queue.enqueue(DUMMY, attempts=3)
    assert await queue.claim(WORKER) is not None
    await store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$set": {"locked.expires": datetime.now(UTC) - timedelta(seconds=1)}})
    await queue.sweep()
    assert (await queue.get(job.id)).state == State.ERROR


async def test_the_sweep_leaves_a_job_being_finished_to_its_writer(
        queue: Queue, store: Store, config: Config) -> None:
    """Between a worker's complete write and its move to the journal the job is final
    in sys.queue; a sweep then must not finish it a second time."""
    job = await queue.enqueue(DUMMY)
    claim = await queue.claim(WORKER)
    assert claim is not None
    now = datetime.now(UTC)
    # the worker's write, and then it is slow (or dies) before the move
    doc = await queue.jobs.transition(
        job.id, sources=["running"], token=claim.token,
        set_fields={"state": "complete", "finished_at": now},
        event={"_id": event_id(),
               "name": "complete_job", "channel": "queue", "author": "w1", "created": now,
               "data": {"state": "complete"}})
    assert doc is not None
    report = await queue.sweep()
    assert report.moved == 0
    assert await store.collection(layout.QUEUE).count_documents({"_id": job.id}) == 1
    later = Queue(store, config, author="sweeper",
                  clock=lambda: datetime.now(UTC) + timedelta(seconds=FINISH_GRACE_S + 1))
    assert (await later.sweep()).moved == 1
    await queue.sweep()
    assert (await queue.get(job.id)).state == State.COMPLETE
    assert (await event_names(queue, job.id)).count("complete_job") == 1
    assert await store.collection(layout.QUEUE).count_documents({}) == 0

