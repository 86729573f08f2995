"""Job types for benchmarks: ``monq enqueue monq.jobs.bench.NoopJob``.

`NoopJob` does nothing and reports nothing, so a benchmark that runs it measures
the queue alone: no progress report (each one is a write the peers compared with
do not pay), no result, no log line.
"""

from __future__ import annotations

from typing import Any

from monq.queue.job import Job


class NoopJob(Job):
    """Does nothing: what a benchmark of the queue itself runs."""

    def execute(self, **_: Any) -> None:
        return None
