"""A short form of scripts/chaos_workers.py: SIGKILL workers holding jobs, SIGSTOP one
past its lease; no job lost, none completed twice."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.chaos
def test_chaos_short_form(mongo_server_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos_workers.py"), "--url", mongo_server_url,
         "--workers", "3", "--jobs", "60", "--kills", "4", "--min-interval", "0.5",
         "--max-interval", "1.0", "--timeout", "180", "--seed", "7", "--sleep-scale", "3",
         "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jobs lost:         0" in result.stdout
    assert "completed twice:   0" in result.stdout
    killed = int(result.stdout.split("workers killed:")[1].split()[0])
    assert killed >= 1
