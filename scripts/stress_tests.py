#!/usr/bin/env python3
"""Run the test suite N times in a row while another copy of it runs at the same time,
and print pass/fail counts per run: a flaky test shows up here, not in someone's commit.

    python scripts/stress_tests.py [--runs 5] [--workers 4] [--no-background]
                                   [--log-dir test-artifacts/stress] [-- PYTEST_ARGS ...]
    python scripts/stress_tests.py --record-durations LOG


Each measured run is README's test command without the install: ``pytest -n WORKERS
--dist loadgroup`` with coverage. The background copy runs the same suite without
coverage (two coverage runs in one directory would combine each other's data), over and
over until the measured runs are done. Each run keeps its output in the log directory.
Exit status: 0 when every measured run passed.

``--record-durations LOG`` instead writes tests/durations.txt from the output of a whole
suite run with ``--durations=0``: each test's setup, call and teardown summed, longest
first. tests/conftest.py starts the longest tests first by it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATIONS = ROOT / "tests" / "durations.txt"
DURATION = re.compile(r"^([\d.]+)s (?:setup|call|teardown) +(\S+)$", re.M)
RECORD_FROM_S = 1.0  # the rest are too quick for their place in the order to matter
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def pytest_command(workers: int, extra: list[str], *, coverage: bool) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-n", str(workers), "--dist", "loadgroup",
               "-q", "-p", "no:cacheprovider", "--basetemp",
               tempfile.mkdtemp(prefix="monq-stress-")]
    return [*command, *([] if coverage else ["--no-cov"]), *extra]


def summary(output: str) -> dict[str, int]:
    """The counts of pytest's last summary line ("3 passed, 1 failed in 9.1s")."""
    lines = [ln for ln in output.splitlines() if re.search(r" in [\d.]+s", ln)]
    counts: dict[str, int] = {}
    for number, word in COUNTS.findall(lines[-1] if lines else ""):
        counts["errors" if word.startswith("error") else word] = int(number)
    return counts


def failures(output: str) -> list[str]:
    """The failed tests, and the coverage gate if it failed (a subset of the suite
    covers less: pass --no-cov after -- for one)."""
    lines = output.splitlines()
    return ([ln.split(" ", 1)[1].split(" - ")[0] for ln in lines
             if ln.startswith(("FAILED ", "ERROR "))]
            + [ln.strip() for ln in lines if ln.startswith("FAIL Required test coverage")])


@contextlib.contextmanager
def background(workers: int, extra: list[str], log_dir: Path) -> Iterator[list[int]]:
    """The other copy of the suite, restarted whenever it ends; its exit codes."""
    codes: list[int] = []
    stop = False
    process: subprocess.Popen[bytes] | None = None

    def loop() -> None:
        nonlocal process
        while not stop:
            with open(log_dir / f"background-{len(codes) + 1}.log", "wb") as log:
                # a session of its own: at the end the whole copy goes, its xdist
                # workers and their database servers with it
                process = subprocess.Popen(pytest_command(workers, extra, coverage=False),
                                           cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
                code = process.wait()
            if not stop:  # a copy stopped because we are done is no result
                codes.append(code)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield codes
    finally:
        stop = True
        if process is not None and process.poll() is None:
            # Ctrl-C, as a terminal sends it to the whole group: the xdist workers
            # run their teardown, which stops the database servers they started (in
            # sessions of their own, out of this group's reach); a SIGTERM left them
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # what the Ctrl-C left behind
        thread.join(60)


def measured_run(number: int, workers: int, extra: list[str], log_dir: Path
                 ) -> tuple[int, dict[str, int], list[str], float]:
    started = time.monotonic()
    result = subprocess.run(pytest_command(workers, extra, coverage=True), cwd=ROOT,
                            capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    (log_dir / f"run-{number}.log").write_text(output)
    return result.returncode, summary(output), failures(output), elapsed


def record_durations(log: Path) -> int:
    totals: dict[str, float] = {}
    for seconds, nodeid in DURATION.findall(log.read_text()):
        totals[nodeid] = totals.get(nodeid, 0.0) + float(seconds)
    slow = sorted(((s, n) for n, s in totals.items() if s >= RECORD_FROM_S), reverse=True)
    if not slow:
        print(f"no durations in {log}: run the suite with --durations=0", file=sys.stderr)
        return 1
    DURATIONS.write_text(
        "# seconds, setup to teardown, of one whole-suite run (scripts/stress_tests.py\n"
        "# --record-durations); tests/conftest.py starts the longest first\n"
        + "".join(f"{seconds:.1f} {nodeid}\n" for seconds, nodeid in slow))
    print(f"{len(slow)} tests of {RECORD_FROM_S:.0f} s or more written to {DURATIONS}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs (default 5)")
    parser.add_argument("--workers", type=int, default=4, help="pytest-xdist workers")
    parser.add_argument("--no-background", action="store_true",
                        help="no second copy of the suite alongside")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "test-artifacts" / "stress")
    parser.add_argument("--record-durations", type=Path, metavar="LOG",
                        help="write tests/durations.txt from a --durations=0 run's output")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    if args.record_durations:
        return record_durations(args.record_durations)
    args.log_dir.mkdir(parents=True, exist_ok=True)

    results = []
    with (contextlib.nullcontext([]) if args.no_background
          else background(args.workers, args.pytest_args, args.log_dir)) as other:
        for number in range(1, args.runs + 1):
            code, counts, failed, elapsed = measured_run(number, args.workers,
                                                         args.pytest_args, args.log_dir)
            results.append(code)
            print(f"run {number}/{args.runs}: exit {code}, {counts.get('passed', 0)} passed, "
                  f"{counts.get('failed', 0)} failed, {counts.get('errors', 0)} errors, "
                  f"{counts.get('skipped', 0)} skipped in {elapsed:.0f}s", flush=True)
            for test in failed:
                print(f"    {test}", flush=True)
    passed = results.count(0)
    print(f"{passed} of {len(results)} runs passed"
          + ("" if args.no_background else
             f"; the background copy ran {len(other)} times to the end, "
             f"{sum(1 for c in other if c != 0)} of them failing")
          + f" (logs in {args.log_dir})")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
