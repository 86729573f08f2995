"""The code that runs inside an executor process: it receives jobs over a pipe,
runs them one at a time, and sends back progress, log lines and the outcome.

Messages to the process: ``("run", spec)`` and ``("exit",)``. Messages from it:
``("ready",)``, ``("progress", value, message, data)``, ``("log", [lines])``,
``("heartbeat",)``, ``("started", at)`` once the job is loaded and about
to run (``at``: the process's own clock, so a job's run time does not depend on
how soon the worker reads the message), and one outcome per job: ``("complete", result)``,
``("failed", error)``, ``("failed_start", error)``, ``("defer", reason, delay_s)``
or ``("release", reason)``.

Progress is rate-limited (the latest value wins) and log lines are batched, so a
chatty job costs no pipe message per call, let alone a database round trip.
The job's stdout and stderr become log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import logging
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from monq.core.jsonio import bounded

PROGRESS_INTERVAL_S = 0.5
LOG_FLUSH_S = 0.5
LOG_BATCH = 200
RESULT_MAX_CHARS = 10_000
PARENT_CHECK_S = 0.2
PR_SET_PDEATHSIG = 1


class Runtime:
    """The `JobRuntime` of a job in this process."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lines: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.last_progress = 0.0
        self.pending_progress: tuple[float, str | None, dict[str, Any]] | None = None

    def progress(self, value: float, message: str | None, data: dict[str, Any]) -> None:
        self.pending_progress = (value, message, data)
        now = time.monotonic()
        if now - self.last_progress >= PROGRESS_INTERVAL_S:
            self._send_progress(now)

    def _send_progress(self, now: float) -> None:
        if self.pending_progress is not None:
            self.conn.send(("progress", *self.pending_progress))
            self.pending_progress = None
            self.last_progress = now

    def log(self, level: int, message: str, extra: dict[str, Any]) -> None:
        self.lines.append({"created": datetime.now(UTC), "level": logging.getLevelName(level),
                           "message": message, "extra": extra})
        if len(self.lines) >= LOG_BATCH or time.monotonic() - self.last_flush > LOG_FLUSH_S:
            self.flush_logs()

    def flush_logs(self) -> None:
        if self.lines:
            self.conn.send(("log", self.lines))
            self.lines = []
        self.last_flush = time.monotonic()

    def heartbeat(self) -> None:
        self.conn.send(("heartbeat",))

    def finish(self) -> None:
        self._send_progress(time.monotonic())
        self.flush_logs()


class StreamToLog(io.TextIOBase):
    """stdout or stderr of a job, written as log lines."""

    def __init__(self, runtime: Runtime, level: int) -> None:
        self.runtime = runtime
        self.level = level
        self.buffer_text = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.buffer_text += text
        while "\n" in self.buffer_text:
            line, self.buffer_text = self.buffer_text.split("\n", 1)
            self.runtime.log(self.level, line, {"stream": "stdout" if self.level == logging.INFO
                                                else "stderr"})
        return len(text)

    def flush(self) -> None:
        if self.buffer_text:
            self.write("\n")


def run_job(spec: dict[str, Any], conn: Connection, loop: asyncio.AbstractEventLoop) -> tuple:
    from monq.queue.job import Defer, load_job_type

    try:
        job_type = load_job_type(spec["name"])
        reason = job_type.precheck()
        if reason:
            return ("release", reason)
        runtime = Runtime(conn)
        job = job_type(id=spec["id"], number=spec["number"], args=spec["args"],
                       attempt=spec["attempt"], runtime=runtime)
        inspect.signature(job.execute).bind(**spec["args"])
    except Exception as exc:
        return ("failed_start", f"{type(exc).__name__}: {exc}")
    conn.send(("started", datetime.now(UTC)))
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = StreamToLog(runtime, logging.INFO), StreamToLog(runtime,
                                                                            logging.WARNING)
    try:
        result = job.execute(**spec["args"])
        if inspect.isawaitable(result):
            result = loop.run_until_complete(result)
        outcome: tuple = ("complete", bounded(result, RESULT_MAX_CHARS))
    except Defer as defer:
        outcome = ("defer", defer.reason, defer.delay_s)
    except BaseException as exc:
        outcome = ("failed", "".join(traceback.format_exception(exc)).strip())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = stdout, stderr
        runtime.finish()
    return outcome


def _exit_with_parent(parent_pid: int) -> None:
    """An executor must not outlive its worker (a SIGKILLed worker cannot stop it)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this process when its worker dies."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def executor_main(conn: Connection) -> None:
    """The executor process: run jobs until told to exit or the pipe closes."""
    import signal
    import threading

    parent = os.getppid()
    os.setpgrp()  # Ctrl-C in a terminal goes to the worker, which stops jobs in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "exit":
            return
        conn.send(run_job(message[1], conn, loop))
