"""Example job types for demos and tests: ``monq enqueue monq.jobs.example.DummyJob sleep=3``."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from monq.queue.job import Job, Param


class DummyJob(Job):
    """Sleeps for `sleep` seconds, reporting progress as it goes."""

    params = {
        "sleep": Param(float, default=0.0, description="seconds to sleep"),
        "steps": Param(int, default=10, description="progress reports on the way"),
    }

    def execute(self, sleep: float = 0.0, steps: int = 10, **_: Any) -> dict[str, Any]:
        steps = max(1, steps)
        for step in range(steps):
            time.sleep(sleep / steps)
            self.progress((step + 1) / steps, f"step {step + 1} of {steps}")
        return {"slept_s": sleep}


class AsyncDummyJob(Job):
    """Like DummyJob, with an async execute."""

    params = {"sleep": Param(float, default=0.0, description="seconds to sleep")}

    async def execute(self, sleep: float = 0.0, **_: Any) -> dict[str, Any]:
        await asyncio.sleep(sleep)
        self.progress(1.0, "done")
        return {"slept_s": sleep}


class FailingJob(Job):
    """Raises an error; retried per `attempts`."""

    attempts = 1
    params = {"message": Param(str, default="this job fails", description="the error")}

    def execute(self, message: str = "this job fails", **_: Any) -> None:
        raise RuntimeError(message)


class DeferringJob(Job):
    """Defers itself every time it runs, until it becomes inactive."""

    defer_time_s = 0.2
    defer_max = 3

    def execute(self, **_: Any) -> None:
        self.defer("waiting for something that never comes")


class LoggingJob(Job):
    """Writes `lines` log lines and some output to stdout and stderr."""

    params = {"lines": Param(int, default=100, description="log lines to write")}

    def execute(self, lines: int = 100, **_: Any) -> None:
        for i in range(lines):
            self.log.info("line %d of %d", i + 1, lines, extra={"i": i})
        print("hello from stdout")
        print("hello from stderr", file=__import__("sys").stderr)


class CrashingJob(Job):
    """Kills its own process, as a segfault would."""

    def execute(self, **_: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class ArgsJob(Job):
    """Declares typed, required and optional arguments."""

    params = {
        "name": Param(str, required=True, description="who"),
        "count": Param(int, default=1, description="how many"),
        "ratio": Param(float, description="a fraction"),
        "mode": Param(str, default="fast", choices=("fast", "slow")),
        "flag": Param(bool, default=False),
    }

    def execute(self, **args: Any) -> dict[str, Any]:
        return args


class RecordingJob(Job):
    """Sleeps a little, then records that it ran (for chaos tests: runs per job)."""

    attempts = 20
    params = {"db_url": Param(str, required=True, description="where to record the run"),
              "sleep": Param(float, default=0.1, description="seconds to sleep")}

    def execute(self, db_url: str = "", sleep: float = 0.1, **_: Any) -> None:
        import pymongo

        time.sleep(sleep)
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(db_url)
        try:
            client.get_default_database()["chaos.runs"].insert_one(
                {"job_id": self.id, "attempt": self.attempt, "pid": os.getpid()})
        finally:
            client.close()
