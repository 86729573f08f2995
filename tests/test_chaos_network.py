"""A short form of scripts/chaos_network.py: a database host, an API host and three
worker hosts in network namespaces; a worker cut off past its lease, the database
paused for 5 s, the API server killed mid-request. No job lost, none completed
twice, none ended in error, and every fault recovered from (how fast is the full
script's figure, not asserted here: this machine is shared).

It needs root and iproute2 (network namespaces): elsewhere it is skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "chaos_network.py"
LINE = re.compile(r"^(?P<fault>[a-z-]+)\s+lost (?P<lost>\d+)\s+"
                  r"completed twice (?P<twice>\d+)\s+ended in error (?P<errored>\d+)\s+"
                  r"recovery (?P<recovery>[\d.]+s|NONE)[^\n]*\n\s+(?P<jobs>\d+) jobs:", re.M)


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos_network", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("chaos_network", module)  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


def logs(path: Path) -> str:
    """The hosts' last log lines, to explain a failure."""
    return "".join(f"\n--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:])
                   for log in sorted((path / "logs").glob("*.log")))


@pytest.mark.chaos
def test_chaos_network_short_form(tmp_path: Path) -> None:
    why = script().requirements()
    if why:
        pytest.skip(f"network namespaces unavailable here: {why}")
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--faults", "quick", "--jobs", "6", "--sleep", "0.5",
         "--lease", "3", "--recovery-limit", "0", "--keep-logs", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the script removes its namespaces on the way out
        stdout, stderr = process.communicate(timeout=60)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    output = result.stdout + result.stderr + logs(tmp_path)
    assert result.returncode == 0, output
    outcomes = {m["fault"]: m for m in LINE.finditer(result.stdout)}
    assert set(outcomes) == {"partition-long", "db-pause-short", "api-kill"}, output
    for outcome in outcomes.values():
        assert int(outcome["jobs"]) > 0, output
        assert (outcome["lost"], outcome["twice"], outcome["errored"]) == ("0", "0", "0"), output
        assert outcome["recovery"] != "NONE", output
    assert "its executors of moved jobs stopped: yes" in result.stdout, output
    assert ", 0 not a 503 saying so" in result.stdout, output
    assert "result: OK" in result.stdout


def test_the_script_refuses_an_unknown_fault() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--faults", "flood"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "unknown fault 'flood'" in result.stderr
    assert "Traceback" not in result.stderr
