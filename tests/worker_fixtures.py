"""Real worker processes for tests: `start_worker` runs ``monq worker`` against the
test database; `wait_job` polls a job until it reaches one of the given states,
`wait_event` until it has an event, `wait_started` until a worker has started."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from monq.queue.model import JobRecord
from monq.queue.queue import Queue
from monq.queue.states import FINAL
from tests.conftest import ROOT
from tests.helpers import MONQ, wait_for_log


async def wait_job(queue: Queue, job: Any, states: set[str] | str,
                   timeout_s: float = 60) -> JobRecord:
    wanted = {states} if isinstance(states, str) else states
    deadline = time.monotonic() + timeout_s
    while True:
        record = await queue.get(job)
        # a finished job's events are relayed before it moves to the journal
        if record.state in wanted and (record.state not in FINAL
                                       or await queue.jobs.in_both(record.id) == (False, True)):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"job #{record.number} is {record.state}, not {wanted}")
        await asyncio.sleep(0.05)


async def wait_started(process: subprocess.Popen[str], timeout_s: float = 60) -> None:
    """Wait until a `start_worker` process logged ``worker_started``: it claims from now on."""
    await asyncio.to_thread(wait_for_log, process, "action=worker_started", timeout_s)


async def wait_event(queue: Queue, job: Any, name: str, timeout_s: float = 60) -> list[str]:
    """Poll until the job's events include `name` (events follow the state change). The
    limit is for a failing test, as wait_job's: at load 20 a worker's first claim came
    after 30 s."""
    deadline = time.monotonic() + timeout_s
    while True:
        names = [e["name"] for e in await queue.events(job)]
        if name in names or time.monotonic() > deadline:
            return names
        await asyncio.sleep(0.05)


STOP_S = 1.0  # how long a test's workers get to stop at its end, per signal


@pytest.fixture
def start_worker(monq_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    # One job slot unless a test asks for more (``--concurrency``): each slot is an
    # executor process started ahead, a fresh interpreter that imports monq (under
    # coverage), and the default four cost more than most of these tests.
    env = {**monq_env, "PYTHONPATH": str(ROOT), "MONQ_WORKER_POLL_MAX_S": "0.2",
           "MONQ_WORKER_HEARTBEAT_S": "0.5", "MONQ_QUEUE_SWEEP_INTERVAL_S": "0.5",
           "MONQ_WORKER_SHUTDOWN_GRACE_S": "5", "MONQ_WORKER_CONCURRENCY": "1",
           # an idle worker beats every third of this: every heartbeat_s here too
           "MONQ_WORKER_DEAD_AFTER_S": "1.5"}

    logs: list[Any] = []

    def start(*args: str, **extra_env: str) -> subprocess.Popen[str]:
        # the worker's log goes to a file: a pipe nobody reads would block it once full
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed after the test
        logs.append(log)
        process = subprocess.Popen([MONQ, "worker", *args], env={**env, **extra_env},
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        process.log_file = log  # type: ignore[attr-defined] # for tests.helpers.wait_for_log
        processes.append(process)
        return process

    yield start
    # SIGTERM, so that the workers (and their executors) write their coverage data: a
    # SIGKILLed process writes none, and which lines counted depended on how far each
    # test's workers got. A worker still waiting for a running job gets the second
    # SIGTERM, which ends it at once (os._exit, which coverage saves at: pyproject.toml);
    # SIGKILL for any still running after that.
    for signum, wait_s in ((signal.SIGTERM, STOP_S), (signal.SIGTERM, STOP_S),
                           (signal.SIGKILL, None)):
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum if process.poll() is None else 0)
        deadline = time.monotonic() + (wait_s or 60)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
    for log in logs:
        log.close()
