"""Integration tests with real `monq worker` processes."""

import asyncio
import itertools
import signal
import time

import pytest

from monq.core.config import Config
from monq.core.embedded import EmbeddedServer, free_port
from monq.core.store import Store, layout, with_database
from monq.queue.queue import Queue
from monq.queue.states import State
from tests.queue_fixtures import DUMMY, event_names
from tests.worker_fixtures import wait_event, wait_job, wait_started

pytestmark = pytest.mark.slow


async def test_jobs_complete_with_progress_and_logs(queue: Queue, start_worker) -> None:
    start_worker("--concurrency", "2")
    sync_job = await queue.enqueue(DUMMY, {"sleep": 0.3, "steps": 3})
    async_job = await queue.enqueue("monq.jobs.example.AsyncDummyJob", {"sleep": 0.1})
    logging_job = await queue.enqueue("monq.jobs.example.LoggingJob", {"lines": 250})
    for job in (sync_job, async_job, logging_job):
        done = await wait_job(queue, job.id, "complete")
        assert done.progress["value"] == 1.0
    assert (await queue.get(sync_job.id)).result == {"slept_s": 0.3}
    names = await event_names(queue, sync_job.id)
    assert names[:3] == ["enqueue_job", "request_start_job", "start_job"]
    assert names[-1] == "complete_job" and "progress_job" in names
    assert names.count("progress_job") <= 3  # rate-limited, not one per call
    lines, total = await queue.read_log(logging_job.id, limit=1000)
    assert total == 252
    assert lines[0]["message"] == "line 1 of 250"
    assert [ln["message"] for ln in lines[-2:]] == ["hello from stdout", "hello from stderr"]
    assert lines[-1]["level"] == "WARNING"


async def test_a_worker_on_a_server_without_change_streams_polls(start_worker) -> None:
    """A standalone server has no change streams: the worker keeps running, and its
    poll finds the work they would have told it of."""
    server = EmbeddedServer("127.0.0.1", free_port(), ":memory:", standalone=True)
    await asyncio.to_thread(server.start)
    store = Store(with_database(server.url, "standalone"), timeout_s=10)
    try:
        assert not await store.supports_change_streams()
        queue = Queue(store, Config())
        worker = start_worker(MONQ_MONGODB_URL=store.url)
        await asyncio.sleep(1.0)  # past its start: work found later is the poll's
        jobs = [await queue.enqueue("monq.jobs.bench.NoopJob") for _ in range(3)]
        for job in jobs:
            await wait_job(queue, job.id, "complete")
        assert worker.poll() is None
    finally:
        await store.close()
        await asyncio.to_thread(server.stop)


async def test_retries_with_backoff_then_success(queue: Queue, start_worker) -> None:
    start_worker()
    job = await queue.enqueue("tests.jobtypes.Flaky")
    done = await wait_job(queue, job.id, "complete")
    assert done.result == "third time lucky"
    events = await queue.events(job.id)
    failures = [e for e in events if e["name"] == "failed_job"]
    assert len(failures) == 2
    starts = [e["created"] for e in events if e["name"] == "request_start_job"]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # 0.2 s, then doubled


async def test_error_after_the_last_attempt(queue: Queue, start_worker) -> None:
    start_worker()
    job = await queue.enqueue("monq.jobs.example.FailingJob", {"message": "nope"},
                              attempts=2)
    done = await wait_job(queue, job.id, "error")
    assert done.last_error.endswith("RuntimeError: nope")
    assert (await event_names(queue, job.id)).count("failed_job") == 2


async def test_defer_until_inactive(queue: Queue, start_worker) -> None:
    start_worker()
    job = await queue.enqueue("monq.jobs.example.DeferringJob")
    done = await wait_job(queue, job.id, "inactive")
    assert done.defer_count == 4
    assert (await event_names(queue, job.id)).count("defer_job") == 3


async def test_bad_arguments_fail_to_start(queue: Queue, start_worker,
                                           store: Store) -> None:
    start_worker()
    job = await queue.enqueue("tests.jobtypes.Strict", {"n": 1}, hold=True)
    await store.collection(layout.QUEUE).update_one({"_id": job.id},
                                                    {"$set": {"args": {"m": 1}}})
    await queue.resume(job.id)
    done = await wait_job(queue, job.id, "error")
    assert "TypeError" in done.last_error
    assert (await event_names(queue, job.id))[-1] == "failed_start"


async def test_a_crashing_job_costs_only_its_process(queue: Queue, start_worker) -> None:
    start_worker("--concurrency", "1")
    crash = await queue.enqueue("monq.jobs.example.CrashingJob")
    after = await queue.enqueue(DUMMY)
    done = await wait_job(queue, crash.id, "error")
    assert "process died" in done.last_error
    await wait_job(queue, after.id, "complete")


async def test_kill_stops_a_running_job(queue: Queue, start_worker) -> None:
    start_worker("--concurrency", "1")
    job = await queue.enqueue("tests.jobtypes.Sleepy", {"seconds": 30})
    # running from the claim on, but its process has started only with start_job: a kill
    # asked before that would come before start_job in the events
    assert "start_job" in await wait_event(queue, job.id, "start_job")
    await queue.kill(job.id)
    await wait_job(queue, job.id, "killed", timeout_s=20)  # long before its 30 s are up
    # the job goes on reporting progress until its worker sees the request and stops it
    names = [n for n in await event_names(queue, job.id) if n != "progress_job"]
    assert names[-2:] == ["request_kill_job", "kill_job"]
    after = await queue.enqueue(DUMMY)  # the executor was replaced
    await wait_job(queue, after.id, "complete")


async def test_remove_a_running_job(queue: Queue, start_worker) -> None:
    start_worker()
    job = await queue.enqueue("tests.jobtypes.Sleepy", {"seconds": 30})
    await wait_job(queue, job.id, "running")
    await queue.remove(job.id)
    await wait_job(queue, job.id, "removed", timeout_s=20)  # before its 30 s are up


async def test_wall_time_flags_and_kills_when_asked(queue: Queue, start_worker) -> None:
    start_worker()
    flagged = await queue.enqueue("tests.jobtypes.WallFlagged", {"seconds": 1.5})
    killed = await queue.enqueue("tests.jobtypes.WallKilled", {"seconds": 30})
    done = await wait_job(queue, flagged.id, "complete")
    assert done.wall_at is not None
    assert "flag_nonstop" in await event_names(queue, flagged.id)
    stopped = await wait_job(queue, killed.id, "killed", timeout_s=20)
    assert stopped.wall_at is not None


async def test_release_when_the_worker_cannot_run_it(queue: Queue, start_worker) -> None:
    start_worker()
    job = await queue.enqueue("tests.jobtypes.NotHere")
    names = await wait_event(queue, job.id, "release_job")
    assert names[:3] == ["enqueue_job", "request_start_job", "release_job"]
    # a younger job run to the end proves the worker claimed again and passed this one by
    after = await queue.enqueue(DUMMY)
    await wait_job(queue, after.id, "complete")
    record = await queue.get(job.id)
    assert record.state == State.PENDING  # this worker leaves it for others
    assert record.attempts_left == record.attempts  # a release costs no attempt
    assert (await event_names(queue, job.id)).count("release_job") == 1


# How long a job held back by what no change in sys.queue tells the end of (a pause,
# full parallel slots) may wait once the hold is over, on a loaded machine: a worker
# polls every poll_max_s while such jobs wait; one waiting for a change, 30 s.
HELD_BACK_S = 15


async def test_max_parallel_across_two_workers(queue: Queue, start_worker) -> None:
    workers = [start_worker("--concurrency", "2"), start_worker("--concurrency", "2")]
    for worker in workers:
        await wait_started(worker)
    jobs = [await queue.enqueue("tests.jobtypes.LimitedSleepy", {"seconds": 0.4})
            for _ in range(3)]
    # a slot given back changes nothing in sys.queue: its worker claims again at
    # once and the other polls (every worker.poll_max_s, 1 s), not the 30 s an
    # idle worker waits for a change
    for job in jobs:
        await wait_job(queue, job.id, "complete", timeout_s=HELD_BACK_S)
    spans = []
    for job in jobs:
        events = await queue.events(job.id)
        start = next(e["created"] for e in events if e["name"] == "start_job")
        end = next(e["created"] for e in events if e["name"] == "complete_job")
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # never two at once


async def test_pools(queue: Queue, start_worker) -> None:
    start_worker("--pool", "default")
    report = await queue.enqueue("tests.jobtypes.ReportSleepy", {"seconds": 0.1})
    # a younger job run to the end proves the worker claimed and passed the report by
    await wait_job(queue, (await queue.enqueue(DUMMY)).id, "complete")
    assert (await queue.get(report.id)).state == State.PENDING
    start_worker("--pool", "reports")
    await wait_job(queue, report.id, "complete")


async def wait_heartbeats(store: Store, pid: int, count: int, timeout_s: float = 30) -> None:
    """Wait until the worker process `pid` has beaten its heartbeat `count` more times
    (every 0.5 s here, while it polls for jobs every 0.2 s at most)."""
    deadline = time.monotonic() + timeout_s
    seen: set[object] = set()
    while len(seen) <= count:
        doc = await store.collection(layout.WORKER).find_one({"pid": pid})
        if doc is not None:
            seen.add(doc["heartbeat"])
        assert time.monotonic() < deadline, f"worker {pid} beat {len(seen)} times"
        await asyncio.sleep(0.05)


async def test_maintenance_pauses_claims(queue: Queue, start_worker, store: Store) -> None:
    await queue.set_maintenance(True)
    worker = start_worker()
    job = await queue.enqueue(DUMMY)
    await wait_started(worker)
    await wait_heartbeats(store, worker.pid, 2)  # its claim loop has gone round since
    assert (await queue.get(job.id)).state == State.PENDING
    # paused by name before the global pause ends: a claim loop going round between
    # the two writes must not see neither
    await queue.pause_name(DUMMY)
    await queue.set_maintenance(False)
    other = await queue.enqueue("monq.jobs.example.AsyncDummyJob")
    await wait_job(queue, other.id, "complete")
    assert (await queue.get(job.id)).state == State.PENDING
    # no change in sys.queue tells of a resume: a worker that jobs wait for polls
    # (every worker.poll_max_s, 1 s), not the 30 s an idle worker waits for a change
    await queue.resume_name(DUMMY)
    await wait_job(queue, job.id, "complete", timeout_s=HELD_BACK_S)


async def test_a_job_held_by_maintenance_runs_soon_after_it_ends(
        queue: Queue, start_worker, store: Store) -> None:
    await queue.set_maintenance(True)
    worker = start_worker()
    await wait_started(worker)
    await wait_heartbeats(store, worker.pid, 1)  # idle, waiting for a change
    job = await queue.enqueue(DUMMY)
    await wait_heartbeats(store, worker.pid, 1)  # it has seen the job and the pause
    await queue.set_maintenance(False)
    # the end of a pause changes nothing in sys.queue: the worker polls while jobs
    # wait (every worker.poll_max_s, 1 s) instead of waiting 30 s for a change
    await wait_job(queue, job.id, "complete", timeout_s=HELD_BACK_S)


async def test_graceful_shutdown_lets_jobs_finish(queue: Queue, start_worker) -> None:
    worker = start_worker()
    job = await queue.enqueue("tests.jobtypes.Sleepy", {"seconds": 1.0})
    await wait_job(queue, job.id, "running")
    worker.send_signal(signal.SIGTERM)
    await wait_job(queue, job.id, "complete")
    assert await asyncio.to_thread(worker.wait, 15) == 0


async def test_shutdown_grace_over_releases_the_job(queue: Queue, start_worker) -> None:
    worker = start_worker(MONQ_WORKER_SHUTDOWN_GRACE_S="0.5")
    job = await queue.enqueue("tests.jobtypes.Sleepy", {"seconds": 30})
    await wait_job(queue, job.id, "running")
    worker.send_signal(signal.SIGTERM)
    released = await wait_job(queue, job.id, "pending", timeout_s=20)
    assert released.attempts_left == released.attempts
    assert (await wait_event(queue, job.id, "release_job"))[-1] == "release_job"
    assert await asyncio.to_thread(worker.wait, 15) == 0


async def test_zombie_of_a_killed_worker_is_reset_and_run(queue: Queue,
                                                          start_worker) -> None:
    doomed = start_worker(MONQ_QUEUE_ZOMBIE_TIME_S="1")
    job = await queue.enqueue("tests.jobtypes.Sleepy", {"seconds": 1.0}, attempts=2,
                              zombie_time_s=1.0)
    await wait_job(queue, job.id, "running")
    doomed.kill()
    doomed.wait()
    start_worker(MONQ_QUEUE_ZOMBIE_TIME_S="1")
    await wait_job(queue, job.id, "complete")
    names = await event_names(queue, job.id)
    assert names.count("flag_zombie") == 1 and names.count("reset_job") == 1, names
    assert names[-1] == "complete_job", names
