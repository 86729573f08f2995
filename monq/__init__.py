"""monq: a MongoDB-backed job queue with a Tornado web and websocket API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monq.core.errors import Error

__version__ = "0.1.0"
__all__ = ["Error", "Job", "__version__"]

if TYPE_CHECKING:
    from monq.queue.job import Job


def __getattr__(name: str) -> Any:
    # `monq.Job` is imported lazily so that `import monq` stays cheap for the CLI.
    if name == "Job":
        from monq.queue.job import Job

        return Job
    raise AttributeError(name)
