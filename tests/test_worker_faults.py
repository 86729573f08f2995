"""Workers under faults, through real processes and a real server: a database paused
(SIGSTOP) for less than the lease changes no job's outcome, a SIGKILLed worker's job
runs again without using its attempts, and a worker loop that cannot go on stops its
worker with a clear message and a non-zero exit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from monq.core import embedded
from monq.core.config import Config
from monq.core.store import Store, layout, with_database
from monq.queue.queue import Queue
from monq.queue.states import FINAL
from tests.conftest import ROOT, discard, untraced_children
from tests.helpers import MONQ
from tests.worker_fixtures import wait_job

SLEEPY = "tests.jobtypes.Sleepy"


@pytest.fixture
def own_server() -> Iterator[embedded.EmbeddedServer]:
    """A database server process of this test's own, to pause and resume."""
    server = embedded.EmbeddedServer("127.0.0.1", embedded.free_port(), ":memory:")
    with untraced_children():  # a database server: no monq code to measure
        server.start()
    try:
        yield server
    finally:
        discard(server)  # paused or not


@pytest.fixture
async def own_queue(own_server: embedded.EmbeddedServer) -> AsyncIterator[Queue]:
    url = with_database(own_server.url, f"monq_f_{uuid.uuid4().hex[:8]}")
    store = Store(url, timeout_s=30)
    await store.ensure_indexes()
    config = Config().with_values(mongodb={"url": url, "embedded": "never"})
    try:
        yield Queue(store, config, author="tester")
    finally:
        await store.close()


class Workers:
    """`monq worker` processes on a queue's database, their output in files."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONQ_")},
                    "MONQ_MONGODB_URL": url, "MONQ_MONGODB_EMBEDDED": "never",
                    "PYTHONPATH": str(ROOT), "MONQ_WORKER_POLL_MAX_S": "0.2",
                    "MONQ_WORKER_HEARTBEAT_S": "0.5", "MONQ_QUEUE_SWEEP_INTERVAL_S": "0.5",
                    "MONQ_WORKER_SHUTDOWN_GRACE_S": "5", "MONQ_MONGODB_CONNECT_TIMEOUT_S": "1"}
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, **env: str) -> subprocess.Popen[str]:
        log = open(self.log_dir / f"worker-{len(self.processes)}.log", "w")  # noqa: SIM115
        with log:
            process = subprocess.Popen([MONQ, "worker"], env={**self.env, **env}, cwd=ROOT,
                                       stdout=log, stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        return process

    def output(self, index: int) -> str:
        return (self.log_dir / f"worker-{index}.log").read_text()

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL if process.poll() is None else 0)
            process.wait()


@pytest.fixture
def workers(own_queue: Queue, tmp_path: Path) -> Iterator[Workers]:
    fleet = Workers(own_queue.store.url, tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


async def event_names(queue: Queue, job_id: object) -> list[str]:
    return [e["name"] for e in await queue.events(job_id)]  # type: ignore[arg-type]


@pytest.mark.slow
async def test_a_database_pause_shorter_than_the_lease_changes_no_outcome(
        own_server: embedded.EmbeddedServer, own_queue: Queue, workers: Workers) -> None:
    """Jobs finish while the database is stopped: their workers keep the results and
    heartbeat on; once it answers again every job completes, once. (A claim whose
    reply the outage cut off leaves a lease nobody holds: that job is recovered, as
    from a dead worker, without using its one attempt, and completes too.)"""
    # operations time out while the server is stopped, as with the client timeouts of
    # a production deployment, so that the worker does see the outage; and, as there,
    # the driver's pool of connections (one, as to the embedded server, queues the
    # reports behind the heartbeats, so that they wait the outage out unseen)
    url = own_queue.store.url.replace("maxPoolSize=1", "maxPoolSize=100")
    workers.start(MONQ_WORKER_CONCURRENCY="4",
                  MONQ_MONGODB_URL=url + ("&" if "?" in url else "?") + "socketTimeoutMS=2000")
    jobs = [await own_queue.enqueue(SLEEPY, {"seconds": 2.0}, attempts=1)
            for _ in range(6)]
    for job in jobs[:4]:
        await wait_job(own_queue, job.id, "running")
    assert own_server.process is not None
    own_server.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(10)  # the running jobs finish meanwhile; the lease is 30 s
    finally:
        own_server.process.send_signal(signal.SIGCONT)
    for job in jobs:
        done = await wait_job(own_queue, job.id, set(FINAL), timeout_s=60)
        assert done.state == "complete", (done.number, done.state, done.last_error)
        names = await event_names(own_queue, job.id)
        assert names.count("complete_job") == 1, names
        if "start_job" in names[:names.index("complete_job")] and job in jobs[:4]:
            # it ran, and its worker knew it: no sweep took it away
            assert names.count("request_start_job") == 1, names
    assert "report_retry" in workers.output(0)  # the outage was real


@pytest.mark.slow
async def test_a_sigkilled_workers_job_runs_again_without_using_its_attempts(
        own_queue: Queue, workers: Workers) -> None:
    # queue.zombie_time_s short for both: until its first heartbeat a claim's lease is
    # that (not the job's 1 s), as is the dead worker's sweeper lease, and the new
    # worker waits half of its own before it tries that lease again; at the default
    # 30 s this test waited 15 to 30 s for one of them
    lease = {"MONQ_QUEUE_ZOMBIE_TIME_S": "2"}
    doomed = workers.start(**lease)
    job = await own_queue.enqueue(SLEEPY, {"seconds": 1.5}, attempts=1, zombie_time_s=1.0)
    await wait_job(own_queue, job.id, "running")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    workers.start(**lease)
    done = await wait_job(own_queue, job.id, set(FINAL), timeout_s=60)
    assert done.state == "complete", (done.state, done.last_error)
    assert done.recoveries == 1 and done.attempts_left == 0
    events = await own_queue.events(job.id)
    resets = [e for e in events if e["name"] == "reset_job"]
    assert [(e["data"]["state"], e["data"]["recoveries"]) for e in resets] == [("pending", 1)]


@pytest.mark.slow
async def test_a_worker_loop_that_cannot_go_on_stops_the_worker(
        own_queue: Queue, workers: Workers) -> None:
    """A lease loop that crashes again and again does not leave a worker claiming
    jobs whose leases nobody renews: the worker releases its jobs and exits non-zero
    with a message that names the loop."""
    job = await own_queue.enqueue(SLEEPY, {"seconds": 60})
    # a document the lease loop cannot handle (a wall time that is not a number)
    await own_queue.store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$set": {"options.wall_time_s": "soon"}})
    worker = workers.start()
    deadline = time.monotonic() + 60
    while worker.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert worker.poll() is not None, "the worker went on without its lease loop"
    assert worker.returncode != 0
    output = workers.output(0)
    assert "the worker's lease loop crashed 5 times in a row" in output
    assert "monq: error:" in output.splitlines()[-1]
    released = await own_queue.get(job.id)
    assert released.state == "pending" and released.locked is None
    assert "release_job" in await event_names(own_queue, job.id)
