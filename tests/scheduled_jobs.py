"""Job types with a class-level schedule, for the scheduler's tests."""

from typing import Any

from monq.queue.job import Job, Param


class Nightly(Job):
    """Runs at 03:00 UTC."""

    schedule = "0 3 * * *"

    def execute(self, **_: Any) -> None:
        return None


class EveryMinute(Job):
    schedule = "* * * * *"
    params = {"label": Param(str, default="x")}

    def execute(self, **_: Any) -> None:
        return None


class Unscheduled(Job):
    def execute(self, **_: Any) -> None:
        return None


class Broken(Job):
    schedule = "every day at noon"

    def execute(self, **_: Any) -> None:
        return None


class OnlyOne(Job):
    unique = True

    def execute(self, **_: Any) -> None:
        return None
