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
