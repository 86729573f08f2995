"""The benchmark scripts' ``--json`` output, as docs/benchmarks.rst documents it: one
JSON object with the documented keys, from a run with tiny counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_json(script: str, *args: str) -> dict:  # type: ignore[type-arg]
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args, "--json"],
                            capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_bench_queue_json(mongo_server_url: str) -> None:
    found = run_json("bench_queue.py", "--url", mongo_server_url, "--jobs", "100",
                     "--lives", "1")
    for key in ("round_trips_job_life", "enqueue_ratio", "enqueue_batch_ratio",
                "cycle_ratio"):
        assert found[key] > 0, key
    # a job's life is at least its enqueue, its claim and its move to the journal
    assert found["round_trips_job_life"] >= 3
    # the worker's change-stream getMores are counted apart, not left out
    assert found["getmores_job_life"] >= 0


@pytest.mark.slow
def test_bench_worker_json(mongo_server_url: str) -> None:
    found = run_json("bench_worker.py", "--url", mongo_server_url, "--jobs", "4",
                     "--idle-s", "0.5", "--idle-warmup-s", "0.5")
    assert found["raw_per_s"] > 0
    # the floor moved every job through monq's collections (it checks the journal)
    assert found["floor_per_s"] > 0
    assert found["idle_commands_per_s"] >= 0
    assert set(found["workers"]) == {"1", "2", "4"}
    for figures in found["workers"].values():
        assert figures["jobs_per_s"] > 0 and figures["ratio"] > 0
        assert figures["ratio_to_floor"] == pytest.approx(
            figures["jobs_per_s"] / found["floor_per_s"], rel=0.01)
        assert 0 <= figures["start_p50_ms"] <= figures["start_p99_ms"]
        # the workers' own count: a job is at least claimed and completed
        assert figures["commands_per_job"] >= 2
    beside = found["one_beside_watchers"]  # the control: one at work, three waiting
    assert beside["jobs_per_s"] > 0 and 0 <= beside["start_p50_ms"] <= beside["start_p99_ms"]
