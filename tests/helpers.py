"""Small helpers shared by tests: running `monq` commands, in this process
(`run_cli`) or as the installed executable (`run_monq`, `spawn_monq`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MONQ = shutil.which("monq", path=str(Path(sys.executable).parent)) or "monq"


def run_monq(*args: str, env: dict[str, str], timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MONQ, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, input=input, check=False)


@contextlib.contextmanager
def spawn_monq(*args: str, env: dict[str, str], cwd: Path | None = None,
               ) -> Iterator[subprocess.Popen[str]]:
    """Start `monq ARGS` in the background; killed (if still running) and reaped after.
    Its stderr (the log) goes to a file, never to a pipe nobody reads: a daemon that
    fills a pipe's buffer blocks on its next log line. Its stdout is read by a thread
    into a queue, so that `wait_for_line` can give up at its deadline (a blocking
    readline could not)."""
    with tempfile.TemporaryFile("w+") as log, subprocess.Popen(
            [MONQ, *args], env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            cwd=cwd) as process:
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(process, lines), daemon=True)
        reader.start()
        process.log_file = log  # type: ignore[attr-defined]
        process.lines = lines  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            reader.join(10)


def _read_lines(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    with contextlib.suppress(ValueError, OSError):  # closed under us: the end as well
        for line in process.stdout:
            lines.put(line)
    lines.put(None)  # end of output


def daemon_log(process: subprocess.Popen[str]) -> str:
    """What a process started by `spawn_monq` wrote to stderr so far."""
    log = process.log_file  # type: ignore[attr-defined]
    log.flush()
    log.seek(0)
    return str(log.read())


def wait_for_log(process: subprocess.Popen[str], needle: str, timeout_s: float = 60) -> str:
    """Wait until a `spawn_monq` process has logged `needle`; its log so far."""
    deadline = time.monotonic() + timeout_s
    while needle not in (log := daemon_log(process)):
        if time.monotonic() > deadline or process.poll() is not None:
            raise AssertionError(f"{needle!r} not logged; got {log[-2000:]!r}")
        time.sleep(0.05)
    return log


def read_until(process: subprocess.Popen[str], needle: str, timeout_s: float
               ) -> tuple[bool, str]:
    """Lines of a `spawn_monq` process's stdout until one contains `needle` or
    `timeout_s` passes or the output ends: (whether it was found, the lines read)."""
    lines: queue.Queue[str | None] = process.lines  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            lines.put(None)  # the end stays the end for the next reader
            break
        seen.append(line)
        if needle in line:
            return True, "".join(seen)
    return False, "".join(seen)


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout_s: float = 60) -> str:
    """Read the process's stdout until a line contains `needle`; all lines read so far."""
    found, seen = read_until(process, needle, timeout_s)
    if not found:
        raise AssertionError(f"{needle!r} not printed; got {seen!r}")
    return seen


@dataclass
class CliResult:
    """What `monq ARGS` did: the same fields as `subprocess.CompletedProcess`."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str], input: str | None = None) -> CliResult:
    """`monq ARGS` in this process, through the entry point the executable calls
    (`monq.cli.main`): the environment is exactly `env` during the call, standard input
    reads `input`, standard output and error are captured. A test that only checks what
    a command prints and changes needs no process of its own (each costs a second of
    interpreter start-up); `run_monq` stays for the tests that prove the wiring.

    Not for daemons or commands that wait for a signal, and not from a running event
    loop (the command runs its own)."""
    from monq.cli import main

    saved_env = dict(os.environ)
    root = logging.getLogger()
    saved_logging = (root.handlers[:], root.level, logging.getLogger("pymongo").level)
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    os.environ.clear()
    os.environ.update(env)
    sys.stdin = io.StringIO(input or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors, --help, --version
                code = _exit_code(exc.code, err)
    finally:
        sys.stdin = stdin
        _finalise_quietly()
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:], level, pymongo_level = saved_logging
        root.setLevel(level)
        logging.getLogger("pymongo").setLevel(pymongo_level)
    return CliResult(code, out.getvalue(), err.getvalue())


def _finalise_quietly() -> None:
    """Finalise what the command's closed event loop left behind. pymongo's async server
    monitor can leave its heartbeat connection to the garbage collector when a client
    closes mid-check (as the filterwarnings in pyproject.toml say for sockets); here its
    transport and stream would warn "unclosed transport" and "loop is closed" in some
    later test. A process exits instead, which is what this stands in for."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unclosed transport", ResourceWarning)
        warnings.filterwarnings("ignore", "loop is closed", ResourceWarning)
        warnings.filterwarnings("ignore", "unclosed <socket.socket", ResourceWarning)
        gc.collect()


def _exit_code(code: object, err: io.StringIO) -> int:
    """The exit status Python gives ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=err)
    return 1


async def run_cli_async(*args: str, env: dict[str, str], input: str | None = None
                        ) -> CliResult:
    """`run_cli` from a test's event loop: the command's own loop runs in a thread."""
    return await asyncio.to_thread(run_cli, *args, env=env, input=input)
