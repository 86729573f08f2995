"""Run your own job types inline in your tests, as Celery's eager mode or arq's test
worker do, but through the real queue: the job is enqueued (its arguments checked
as the API would), claimed, started and finished with the same state changes, events
and log lines a worker writes, in a real database. Only the executor process is
left out: ``execute`` runs in the calling thread, so a debugger and breakpoints
work and an exception's traceback ends up in ``last_error``::

    from monq.testing import JobRunner

    def test_report():
        with JobRunner() as runner:       # an embedded in-memory database
            job = runner.run("myproject.jobs.Report", day="2026-11-24")
        assert job.state == "complete"
        assert job.result == {"rows": 42}

Without a URL the runner starts an embedded SecantusDB (the ``embedded`` extra) in
memory for its block; ``JobRunner(url="mongodb://localhost:27017/test_x")`` uses
that database instead (and leaves it as it is). A runner serves one test at a time:
`run` claims the job it just enqueued and refuses when another job comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import traceback
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

from monq.core.config import Config
from monq.core.embedded import EmbeddedServer, free_port
from monq.core.errors import Error
from monq.core.store import with_database
from monq.queue.job import Defer, load_job_type
from monq.queue.model import JobRecord
from monq.queue.queue import WorkerRef
from monq.queue.sync import SyncQueue
from monq.worker.executor_process import Runtime, StreamToLog

__all__ = ["JobRunner", "RunnerError"]


class RunnerError(Error):
    """The job could not be run inline."""


class _Recorder:
    """The job's runtime: progress and log lines, kept until the job returns and
    then written as a worker writes them (the latest progress wins)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.last_progress: tuple[float, str | None, dict[str, Any]] | None = None

    def progress(self, value: float, message: str | None, data: dict[str, Any]) -> None:
        self.last_progress = (value, message, data)

    def log(self, level: int, message: str, extra: dict[str, Any]) -> None:
        self.lines.append({"created": datetime.now(UTC), "level": logging.getLevelName(level),
                           "message": message, "extra": extra})

    def heartbeat(self) -> None:
        """Nothing to do: the job runs in this process, nobody waits for a heartbeat."""


class JobRunner:
    """Runs jobs inline against a real database; a context manager."""

    def __init__(self, url: str | None = None, *, config: Config | None = None) -> None:
        self._server: EmbeddedServer | None = None
        if config is None:
            if url is None:
                self._server = EmbeddedServer("127.0.0.1", free_port(), ":memory:")
                self._server.start()
                url = with_database(self._server.url, f"monq_test_{uuid.uuid4().hex[:8]}")
            config = Config().with_values(mongodb={"url": url, "embedded": "never"})
        self.config = config
        try:
            self.queue = SyncQueue(config, author="test", origin="test")
        except BaseException:
            self._stop_server()
            raise
        self._worker = WorkerRef(f"test-{os.getpid()}", socket.gethostname(), os.getpid())

    def run(self, name: str, args: dict[str, Any] | None = None, /,
            **kwargs: Any) -> JobRecord:
        """Enqueue job type `name` with `args` (or keyword arguments), run it here and
        now, and return the finished (or failed, deferred) job as the queue holds it.
        Options go in ``options={...}`` (``priority``, ``attempts``, ...)."""
        options = kwargs.pop("options", {})
        record = self.queue.enqueue(name, {**(args or {}), **kwargs}, **options)
        claim = self.queue.claim(self._worker, pool=record.pool, tags=list(record.tags))
        if claim is None or claim.job.id != record.id:
            if claim is not None:
                self.queue.release(claim.job.id, claim.token, "not this test's job")
            raise RunnerError(f"job #{record.number} cannot run now (held, delayed or "
                              f"waiting for another job; or another job came first)")
        outcome = self._execute(claim.job, claim.token)
        kind = outcome[0]
        if kind == "complete":
            self.queue.complete(record.id, claim.token, result=outcome[1])
        elif kind == "defer":
            self.queue.defer(record.id, claim.token, outcome[1], outcome[2])
        elif kind == "failed_start":
            self.queue.fail_start(record.id, claim.token, outcome[1])
        elif kind == "release":
            self.queue.release(record.id, claim.token, outcome[1])
        else:
            self.queue.fail(record.id, claim.token, outcome[1])
        return self.queue.get(record.id)  # type: ignore[no-any-return]

    def _execute(self, record: JobRecord, token: str) -> tuple[Any, ...]:
        recorder = _Recorder()
        try:
            job_type = load_job_type(record.name)
            reason = job_type.precheck()
            if reason:
                return ("release", reason)
            job = job_type(id=record.id, number=record.number, args=record.args,
                           attempt=record.attempt, runtime=recorder)
            inspect.signature(job.execute).bind(**record.args)
        except Exception as exc:
            return ("failed_start", f"{type(exc).__name__}: {exc}")
        self.queue.start(record.id, token)
        # stdout and stderr become log lines, as in an executor process
        # (StreamToLog only calls .log, which the recorder has)
        sink = cast(Runtime, recorder)
        out, err = StreamToLog(sink, logging.INFO), StreamToLog(sink, logging.WARNING)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                result = job.execute(**record.args)
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
            outcome: tuple[Any, ...] = ("complete", result)
        except Defer as defer:
            outcome = ("defer", defer.reason, defer.delay_s)
        except Exception as exc:
            outcome = ("failed", "".join(traceback.format_exception(exc)).strip())
        finally:
            out.flush()
            err.flush()
        if recorder.lines:
            self.queue.append_logs(record.id, recorder.lines)
        if recorder.last_progress is not None:
            self.queue.progress(record.id, token, *recorder.last_progress)
        return outcome

    def log(self, job: JobRecord) -> list[dict[str, Any]]:
        """The job's log lines (``level``, ``message``, ...), oldest first."""
        lines, _ = self.queue.log(job.id)
        return list(lines)

    def events(self, job: JobRecord) -> list[str]:
        """The names of the job's events, in order (``enqueue_job``, ...)."""
        return [event["name"] for event in self.queue.events(job.id)]

    def close(self) -> None:
        try:
            self.queue.close()
        finally:
            self._stop_server()

    def _stop_server(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.stop()
            self._server = None

    def __enter__(self) -> JobRunner:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
