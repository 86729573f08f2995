"""Job types used only by tests (importable as ``tests.jobtypes.X``)."""

from typing import Any

from monq.queue.job import Job, Param


class Retrying(Job):
    attempts = 3
    retry_delay_s = 10.0
    retry_backoff = 2.0

    def execute(self, **_: Any) -> None:
        raise RuntimeError("again")


class Unique(Job):
    unique = True

    def execute(self, **_: Any) -> None:
        return None


class Limited(Job):
    max_parallel = 1

    def execute(self, **_: Any) -> None:
        return None


class Tagged(Job):
    tags = ("gpu",)

    def execute(self, **_: Any) -> None:
        return None


class Reports(Job):
    pool = "reports"

    def execute(self, **_: Any) -> None:
        return None


class Quick(Job):
    attempts = 2
    zombie_time_s = 1.0

    def execute(self, **_: Any) -> None:
        return None


class Strict(Job):
    params = {"n": Param(int, required=True)}

    def execute(self, n: int) -> int:
        return n


NOT_A_JOB = 42


class Sleepy(Job):
    """Sleeps, reporting progress; for kill, wall-time and shutdown tests."""

    wall_time_s = None

    def execute(self, seconds: float = 30.0, **_: Any) -> str:
        import time

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.progress(1 - (end - time.monotonic()) / seconds, "sleeping")
            time.sleep(0.05)
        return "slept"


class WallKilled(Sleepy):
    wall_time_s = 0.5
    kill_on_wall = True


class WallFlagged(Sleepy):
    wall_time_s = 0.5


class Flaky(Job):
    """Fails on its first attempts, succeeds on the last."""

    attempts = 3
    retry_delay_s = 0.2
    retry_backoff = 2.0

    def execute(self, **_: Any) -> str:
        if self.attempt < 3:
            raise RuntimeError(f"attempt {self.attempt} fails")
        return "third time lucky"


class NotHere(Job):
    """Cannot run on any worker: always given back."""

    @classmethod
    def precheck(cls) -> str | None:
        return "no licence on this machine"

    def execute(self, **_: Any) -> None:
        return None


class LimitedSleepy(Sleepy):
    max_parallel = 1


class ReportSleepy(Sleepy):
    pool = "reports"
