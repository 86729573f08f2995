"""Every transition of the table, refused transitions, leases and recovery."""

from datetime import UTC, datetime, timedelta

import pytest

from monq.core.errors import LeaseLost, TransitionRefused
from monq.core.store import Store, layout
from monq.queue.queue import Queue, WorkerRef
from monq.queue.states import State
from tests.queue_fixtures import DUMMY, WORKER, event_names


async def claim(queue: Queue, **kwargs: object):  # type: ignore[no-untyped-def]
    result = await queue.claim(WORKER, **kwargs)  # type: ignore[arg-type]
    assert result is not None
    return result


async def test_claim_takes_highest_priority_then_oldest(queue: Queue) -> None:
    low = await queue.enqueue(DUMMY, priority=0)
    high_old = await queue.enqueue(DUMMY, priority=5)
    high_new = await queue.enqueue(DUMMY, priority=5)
    order = [(await claim(queue)).job.id for _ in range(3)]
    assert order == [high_old.id, high_new.id, low.id]
    assert await queue.claim(WORKER) is None


async def test_full_life_complete(queue: Queue, store: Store) -> None:
    job = await queue.enqueue(DUMMY)
    c = await claim(queue)
    assert c.job.state == State.RUNNING
    assert c.job.locked is not None and c.job.locked.worker == "w1"
    assert c.job.attempts_left == 0
    await queue.start(c.job.id, c.token)
    await queue.progress(c.job.id, c.token, 0.5, "half", {"rows": 10})
    running = await queue.get(job.id)
    assert running.progress["value"] == 0.5 and running.progress["message"] == "half"
    done = await queue.complete(c.job.id, c.token, result={"ok": True})
    assert done.state == State.COMPLETE
    assert await store.collection(layout.QUEUE).count_documents({}) == 0
    final = await queue.get(job.id)
    assert final.state == State.COMPLETE and final.result == {"ok": True}
    assert final.runtime is not None and final.finished_at is not None
    events = await queue.events(job.id)
    assert [e["name"] for e in events] == [
        "enqueue_job", "request_start_job", "start_job", "progress_job", "complete_job"]
    assert [e["data"]["state"] for e in events] == [
        "pending", "running", "running", "running", "complete"]
    assert events[3]["data"]["progress"] == 0.5
    assert events[3]["data"]["message"] == "half"
    assert events[3]["data"]["progress_data"] == {"rows": 10}
    assert [e["_id"] for e in events] == sorted(e["_id"] for e in events)


async def test_not_before_query_at(queue: Queue) -> None:
    now = datetime.now(UTC)
    await queue.enqueue(DUMMY, at=now + timedelta(hours=1))
    assert await queue.claim(WORKER) is None


async def test_tags_and_pools(queue: Queue) -> None:
    tagged = await queue.enqueue("tests.jobtypes.Tagged")
    report = await queue.enqueue("tests.jobtypes.Reports")
    assert await queue.claim(WORKER) is None
    assert await queue.claim(WORKER, tags=["cpu"]) is None
    assert (await claim(queue, tags=["gpu", "cpu"])).job.id == tagged.id
    assert (await claim(queue, pool="reports")).job.id == report.id


async def test_exclude_names(queue: Queue) -> None:
    await queue.enqueue(DUMMY)
    assert await queue.claim(WORKER, exclude_names=[DUMMY]) is None


async def test_release_gives_the_attempt_back(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY)
    c = await claim(queue)
    released = await queue.release(c.job.id, c.token, "missing requirement")
    assert released.state == State.PENDING and released.attempts_left == 1
    assert released.locked is None
    assert await event_names(queue, job.id) == ["enqueue_job", "request_start_job",
                                                "release_job"]
    with pytest.raises(LeaseLost):
        await queue.start(c.job.id, c.token)


async def test_retry_with_backoff_then_error(queue: Queue) -> None:
    job = await queue.enqueue("tests.jobtypes.Retrying")
    c = await claim(queue)
    before = datetime.now(UTC)
    failed = await queue.fail(c.job.id, c.token, "boom 1")
    assert failed.state == State.FAILED and failed.last_error == "boom 1"
    assert failed.query_at is not None
    assert 9 <= (failed.query_at - before).total_seconds() <= 11  # retry_delay_s
    assert await queue.claim(WORKER) is None  # not before the retry time
    await queue.restart(job.id)  # run it now
    c = await claim(queue)
    before = datetime.now(UTC)
    failed = await queue.fail(c.job.id, c.token, "boom 2")
    assert 19 <= (failed.query_at - before).total_seconds() <= 21  # doubled
    await queue.restart(job.id)
    c = await claim(queue)
    final = await queue.fail(c.job.id, c.token, "boom 3")
    assert final.state == State.ERROR
    assert (await queue.get(job.id)).state == State.ERROR
    names = await event_names(queue, job.id)
    assert names.count("failed_job") == 3
    assert names.count("restart_waiting") == 2


async def test_fail_start(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY)
    c = await claim(queue)
    await queue.fail_start(c.job.id, c.token, "ImportError")
    assert (await queue.get(job.id)).state == State.ERROR
    assert (await event_names(queue, job.id))[-1] == "failed_start"


async def test_defer_until_inactive(queue: Queue) -> None:
    job = await queue.enqueue("monq.jobs.example.DeferringJob")
    for round_ in range(3):
        c = await claim(queue)
        deferred = await queue.defer(c.job.id, c.token, "not yet", delay_s=0)
        assert deferred.state == State.DEFERRED and deferred.defer_count == round_ + 1
        assert deferred.attempts_left == 1  # a deferral is not a failed attempt
    c = await claim(queue)
    inactive = await queue.defer(c.job.id, c.token, "still not")
    assert inactive.state == State.INACTIVE
    names = await event_names(queue, job.id)
    assert names.count("defer_job") == 3 and names[-1] == "inactivate_job"


async def test_defer_waits(queue: Queue) -> None:
    await queue.enqueue(DUMMY)
    c = await claim(queue)
    await queue.defer(c.job.id, c.token, "later", delay_s=60)
    assert await queue.claim(WORKER) is None


async def test_kill_waiting_and_running(queue: Queue) -> None:
    waiting = await queue.enqueue(DUMMY)
    running = await queue.enqueue(DUMMY)
    await queue.hold(waiting.id)
    c = await claim(queue)
    assert c.job.id == running.id
    assert (await queue.kill(waiting.id)).state == State.KILLED
    requested = await queue.kill(running.id)
    assert requested.state == State.RUNNING and requested.killed_at is not None
    with pytest.raises(TransitionRefused, match="cannot kill job #2: it is running"):
        await queue.kill(running.id)  # already requested
    reply = await queue.heartbeat("w1", [(c.job.id, c.token)])
    assert reply.kill == {c.job.id} and not reply.lost
    killed = await queue.mark_killed(c.job.id, c.token)
    assert killed.state == State.KILLED
    assert await event_names(queue, running.id) == [
        "enqueue_job", "request_start_job", "request_kill_job", "kill_job"]
    with pytest.raises(TransitionRefused, match="it is killed"):
        await queue.kill(running.id)


async def test_remove_waiting_and_running(queue: Queue) -> None:
    waiting = await queue.enqueue(DUMMY)
    assert (await queue.remove(waiting.id)).state == State.REMOVED
    running = await queue.enqueue(DUMMY)
    c = await claim(queue)
    await queue.remove(running.id)
    reply = await queue.heartbeat("w1", [(c.job.id, c.token)])
    assert reply.remove == {c.job.id}
    await queue.mark_removed(c.job.id, c.token)
    assert (await queue.get(running.id)).state == State.REMOVED
    assert await event_names(queue, running.id) == [
        "enqueue_job", "request_start_job", "request_remove_job", "remove_job"]


async def test_hold_and_resume(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY)
    await queue.hold(job.id)
    with pytest.raises(TransitionRefused, match="cannot hold job #1: it is pending and held"):
        await queue.hold(job.id)
    assert await queue.claim(WORKER) is None
    await queue.resume(job.id)
    with pytest.raises(TransitionRefused, match="not held"):
        await queue.resume(job.id)
    c = await claim(queue)
    with pytest.raises(TransitionRefused, match="cannot hold job #1: it is running"):
        await queue.hold(c.job.id)
    assert await event_names(queue, job.id) == ["enqueue_job", "hold_job", "resume_job",
                                                "request_start_job"]


async def test_restart_stopped_links_parent_and_child(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY, priority=3)
    killed = await queue.kill(job.id)
    child = await queue.restart(killed.id)
    assert child.id != job.id and child.state == State.PENDING
    assert child.parent_id == job.id and child.priority == 3
    assert child.enqueued["origin"] == "restart"
    parent = await queue.get(job.id)
    assert parent.child_id == child.id
    assert (await event_names(queue, job.id))[-1] == "restart_stopped"
    again = await queue.restart(job.id)  # idempotent: the same child
    assert again.id == child.id


async def test_restart_complete_is_refused(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY)
    c = await claim(queue)
    await queue.complete(c.job.id, c.token)
    with pytest.raises(TransitionRefused, match="cannot restart job #1: it is complete") as e:
        await queue.restart(job.id)
    assert e.value.state == "complete"


async def test_worker_writes_need_the_lease(queue: Queue) -> None:
    await queue.enqueue(DUMMY)
    c = await claim(queue)
    with pytest.raises(LeaseLost, match="lease is lost"):
        await queue.complete(c.job.id, "not-the-token")
    with pytest.raises(LeaseLost):
        await queue.progress(c.job.id, "not-the-token", 0.1)
    with pytest.raises(LeaseLost):
        await queue.fail(c.job.id, "not-the-token", "x")


async def test_zombie_is_flagged_and_reset_exactly_once(queue: Queue, store: Store) -> None:
    job = await queue.enqueue("tests.jobtypes.Quick")
    c = await claim(queue)
    await store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$set": {"locked.expires": datetime.now(UTC) - timedelta(seconds=1)}})
    reports = [await queue.sweep(), await queue.sweep()]
    assert [r.zombies for r in reports] == [1, 0]
    reset = await queue.get(job.id)
    assert reset.state == State.PENDING and reset.zombie_at is not None
    assert reset.attempts_left == 2  # a lost worker does not cost the job an attempt
    assert reset.recoveries == 1
    assert await event_names(queue, job.id) == [
        "enqueue_job", "request_start_job", "flag_zombie", "reset_job"]
    with pytest.raises(LeaseLost):
        await queue.complete(c.job.id, c.token)  # the dead worker's late write
    second = await claim(queue)
    await store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$set": {"locked.expires": datetime.now(UTC) - timedelta(seconds=1)}})
    await queue.sweep()
    again = await queue.get(job.id)
    assert again.state == State.PENDING and again.recoveries == 2
    assert second.token != c.token


async def test_heartbeat_keeps_the_lease_and_reports_lost(queue: Queue, store: Store) -> None:
    await queue.enqueue(DUMMY)
    c = await claim(queue)
    reply = await queue.heartbeat("w1", [(c.job.id, c.token)], {c.job.id: 100.0})
    assert not reply.lost
    doc = await store.collection(layout.QUEUE).find_one({"_id": c.job.id})
    assert doc["locked"]["expires"] > datetime.now(UTC) + timedelta(seconds=90)
    reply = await queue.heartbeat("w1", [(c.job.id, "stale")])
    assert reply.lost == {c.job.id}


async def test_max_parallel_across_workers(queue: Queue) -> None:
    a = await queue.enqueue("tests.jobtypes.Limited")
    await queue.enqueue("tests.jobtypes.Limited")
    other = await queue.enqueue(DUMMY)
    first = await claim(queue)
    assert first.job.id == a.id
    second = await queue.claim(WorkerRef("w2", "h", 2))
    assert second is not None and second.job.id == other.id  # the limited one waits
    assert await queue.claim(WorkerRef("w3", "h", 3)) is None
    await queue.complete(first.job.id, first.token)
    # another worker process: this one's Queue may remember the name as full for up to a
    # second (FULL_NAMES_TTL_S; on a slow machine the claim above refreshed it)
    w3 = Queue(queue.store, queue.config)
    third = await w3.claim(WorkerRef("w3", "h", 3))
    assert third is not None and third.job.name == "tests.jobtypes.Limited"


async def test_flag_nonstop_once(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY)
    await claim(queue)
    assert (await queue.flag_nonstop(job.id)) is not None
    assert (await queue.flag_nonstop(job.id)) is None
    assert (await event_names(queue, job.id)).count("flag_nonstop") == 1


async def test_maintenance(queue: Queue) -> None:
    assert not (await queue.maintenance()).global_pause
    await queue.set_maintenance(True)
    await queue.pause_name(DUMMY)
    state = await queue.maintenance()
    assert state.global_pause and state.paused_names == {DUMMY}
    await queue.set_maintenance(False)
    await queue.resume_name(DUMMY)
    assert await queue.maintenance() == type(state)(False, frozenset())


async def test_logs_in_order(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY)
    now = datetime.now(UTC)
    await queue.append_logs(job.id, [{"created": now, "level": "INFO", "message": f"m{i}",
                                      "extra": {}} for i in range(5)])
    await queue.append_logs(job.id, [{"created": now, "level": "ERROR", "message": "last",
                                      "extra": {"k": 1}}])
    lines, total = await queue.read_log(job.number)
    assert total == 6
    assert [ln["message"] for ln in lines] == ["m0", "m1", "m2", "m3", "m4", "last"]
    page, _ = await queue.read_log(job.id, skip=4, limit=1)
    assert page[0]["message"] == "m4"
