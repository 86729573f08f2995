"""Counting the MongoDB commands a process sends, for the benchmark scripts.

When ``MONQ_BENCH_COMMANDS_DIR`` names a folder, every `Store` of the process gets
one shared pymongo command listener that counts the commands it starts, by name,
and writes the counts to ``<folder>/<pid>.json`` at most every `FLUSH_S` seconds
and at exit; scripts/bench_worker.py reads them from the `monq worker` processes
it starts. Without the variable no listener is installed: nothing is added to
any command's path.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from pathlib import Path

from pymongo import monitoring

ENV = "MONQ_BENCH_COMMANDS_DIR"
FLUSH_S = 0.2
# the driver's own monitoring and connection handshakes, not monq's work
IGNORED = frozenset({"hello", "ismaster", "isMaster", "endSessions"})


class CommandCounter(monitoring.CommandListener):
    """Counts started commands by name; writes them to `path` now and then."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.by_name: dict[str, int] = {}
        self._lock = threading.Lock()  # the sync driver may call from several threads
        self._flushed = 0.0

    @property
    def total(self) -> int:
        return sum(self.by_name.values())

    def reset(self) -> None:
        with self._lock:
            self.by_name = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in IGNORED:
            return
        with self._lock:
            self.by_name[name] = self.by_name.get(name, 0) + 1
        if self.path is not None and time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def flush(self) -> None:
        if self.path is None:
            return
        self._flushed = time.monotonic()
        with self._lock:
            text = json.dumps({"pid": os.getpid(), "at": time.time(), "by_name": self.by_name})
        partial = self.path.with_suffix(".part")
        partial.write_text(text)
        partial.replace(self.path)  # a reader never sees half a file


_counter: CommandCounter | None = None


def listeners() -> list[monitoring.CommandListener]:
    """The process's counter when ``MONQ_BENCH_COMMANDS_DIR`` is set, else none."""
    global _counter
    folder = os.environ.get(ENV)
    if not folder:
        return []
    if _counter is None:
        _counter = CommandCounter(Path(folder) / f"{os.getpid()}.json")
        atexit.register(_counter.flush)
    return [_counter]


def read_counts(folder: str | Path) -> dict[int, dict[str, int]]:
    """The counts last written by each process into `folder`, by process id."""
    found: dict[int, dict[str, int]] = {}
    for path in Path(folder).glob("*.json"):
        data = json.loads(path.read_text())
        found[int(data["pid"])] = {str(k): int(v) for k, v in data["by_name"].items()}
    return found
