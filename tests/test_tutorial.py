"""docs/tutorial.rst works as written: in an empty directory, its files are written
from its captioned code blocks and every ``$`` command of its console blocks is run
in order, in one shell's state (``export`` lines carry over), with ``monq up`` in
the background as the tutorial's second terminal. Only the addresses change: the
test's own MongoDB and a free port for the API. Then the reader's job has run, been
scheduled and notified."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from monq.core.embedded import free_port
from tests.conftest import ROOT

TUTORIAL = ROOT / "docs" / "tutorial.rst"
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"^\.\. code-block:: (\w+)\n((?:    :\w+: .*\n)*)\n((?:    .*\n|\n)+)",
                   flags=re.M)
RETRY = re.compile(r'^\.\. test: retry until the output shows "([^"]+)"\n', flags=re.M)
COMMAND_TIMEOUT_S = 120
RETRY_S = 90


def steps(text: str) -> list[tuple[str, str, str | None]]:
    """("file", path, content) and ("run", command, text to retry for) in order."""
    found: list[tuple[str, str, str | None]] = []
    for match in BLOCK.finditer(text):
        language, options, body = match.groups()
        lines = [line[4:] for line in body.rstrip("\n").split("\n")]
        caption = re.search(r":caption: (\S+)", options)
        if caption:
            found.append(("file", caption.group(1), "\n".join(lines) + "\n"))
        elif language == "console":
            before = text[:match.start()].rstrip("\n").rsplit("\n\n", 1)[-1]
            retry = RETRY.search(before + "\n")
            for line in lines:
                if line.startswith("$ "):
                    found.append(("run", line[2:], retry.group(1) if retry else None))
    return found


def test_the_tutorial_reads_in_the_order_a_newcomer_needs() -> None:
    found = steps(TUTORIAL.read_text())
    commands = [s[1] for s in found if s[0] == "run"]
    files = [s[1] for s in found if s[0] == "file"]
    assert files == ["myproject/jobs.py", "monq.toml", "enqueue.py", "tests/test_greet.py"]
    assert commands[0].startswith("mkdir") and "monq up" in commands
    assert commands.index("monq up") < min(i for i, c in enumerate(commands)
                                           if c.startswith("monq enqueue"))
    assert any("schedules add" in c for c in commands)
    assert any("notify list" in c for c in commands)


def _health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2):
            return True
    except OSError:
        return False


class Reader:
    """A reader's shell: the tutorial's directory, its exports so far, ``monq up``."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.port = free_port()
        self.work = tmp_path / "tutorial"
        self.work.mkdir()
        (tmp_path / "home").mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MONQ_")}
        # PYTEST_DISABLE_PLUGIN_AUTOLOAD: the reader's pytest is plain; this virtualenv's
        # test plugins (schemathesis, hypothesis, xdist, ...) took 2 of the 2.5 s of CPU
        # its `python -m pytest` cost, and they are no part of what the tutorial shows
        self.env.update(PATH=f"{BIN}:{self.env.get('PATH', '')}", HOME=str(tmp_path / "home"),
                        PYTHONUNBUFFERED="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
        # this test's addresses, where monq reads them after the file (the environment
        # wins over monq.toml); everything else as the reader has it
        self.state = [f"export MONQ_MONGODB_URL={shlex.quote(db_url)} "
                      f"MONQ_MONGODB_EMBEDDED=never MONQ_API_PORT={self.port} "
                      f"MONQ_PATHS_VAR={shlex.quote(str(tmp_path / 'var'))}"]
        self.up: subprocess.Popen[bytes] | None = None
        self.up_log = tmp_path / "up.log"

    def write(self, name: str, content: str) -> None:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def start_up(self) -> None:
        with self.up_log.open("wb") as log:
            self.up = subprocess.Popen(["bash", "-c", "\n".join([*self.state, "exec monq up"])],
                                       cwd=self.work, env=self.env, stdout=log,
                                       stderr=subprocess.STDOUT)
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while not _health(self.port):
            assert self.up.poll() is None, self.up_log.read_text()
            assert time.monotonic() < deadline, "monq up did not start"
            time.sleep(0.5)

    def run(self, command: str, retry: str | None = None) -> str:
        """Run `command` (again until its output shows `retry`); its output."""
        command = command.replace("localhost:5001", f"localhost:{self.port}")
        deadline = time.monotonic() + RETRY_S
        while True:
            done = subprocess.run(["bash", "-ec", "\n".join([*self.state, command])],
                                  cwd=self.work, env=self.env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            if retry is None or retry in done.stdout or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert retry is None or retry in done.stdout, (command, done.stdout)
        if command.startswith("export "):
            self.state.append(command)
        return done.stdout

    def stop(self) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(30)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait()


@pytest.mark.slow
def test_every_command_of_the_tutorial_runs_from_an_empty_directory(
        tmp_path: Path, db_url: str) -> None:
    reader = Reader(tmp_path, db_url)
    try:
        for kind, what, extra in steps(TUTORIAL.read_text()):
            if kind == "file":
                reader.write(what, str(extra))
            elif what == "monq up":
                reader.start_up()
            else:
                out = reader.run(what, extra)
                if what.startswith("monq enqueue"):
                    assert "job #1 complete" in out, out
                if what.startswith("curl") and "/api/v1/jobs" in what:
                    assert json.loads(out)["code"] == 200, out
                if what.startswith("python -m pytest"):
                    assert "2 passed" in out, out
        assert reader.up is not None and reader.up.poll() is None, "monq up ended early"
        # the reader's job ran, enqueued three ways and by the schedule, and notified
        jobs = json.loads(reader.run("monq jobs --finished --json --limit 100"))["jobs"]
        origins = {j["enqueued"]["origin"] for j in jobs if j["state"] == "complete"}
        assert {"cli", "script", "api", "scheduler"} <= origins, origins
        assert {j["result"] for j in jobs} >= {"Hello, Ann!", "Hello, Bob!", "Hello, Carl!",
                                               "Hello, schedule!"}
        log = reader.run("monq job 1")
        assert "greeted Ann" in log and "greeting Ann" in log
    finally:
        reader.stop()


def test_operations_names_every_process_monq_up_runs() -> None:
    from monq.cli.up import ROLE_FACTORIES

    text = (ROOT / "docs" / "operations.rst").read_text()
    enable = next(line for line in text.splitlines() if "systemctl enable" in line)
    for role in ROLE_FACTORIES:
        assert f"``monq {role}``" in text, role
        assert f"monq@{role}" in enable, role
