"""Small helpers shared by tests: running the installed `monq` executable."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
    fills a pipe's buffer blocks on its next log line."""
    with tempfile.TemporaryFile("w+") as log, subprocess.Popen(
            [MONQ, *args], env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            cwd=cwd) as process:
        process.log_file = log  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()


def daemon_log(process: subprocess.Popen[str]) -> str:
    """What a process started by `spawn_monq` wrote to stderr so far."""
    log = process.log_file  # type: ignore[attr-defined]
    log.flush()
    log.seek(0)
    return str(log.read())


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout_s: float = 60) -> str:
    """Read the process's stdout until a line contains `needle`; all lines read so far."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} not printed; got {''.join(seen)!r}")
