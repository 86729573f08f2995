"""`monq` enqueue, list, show and act on jobs, in this process through `monq.cli.main`;
a pipe that closes early is checked on the installed executable."""

import json
import subprocess

import pytest

from tests.conftest import ROOT
from tests.helpers import MONQ, CliResult, run_cli


def monq(env: dict[str, str], *args: str) -> CliResult:
    return run_cli(*args, env=env)


def test_enqueue_list_show_and_act(monq_env: dict[str, str]) -> None:
    out = monq(monq_env, "enqueue", "monq.jobs.example.ArgsJob", "name=x", "count=3",
               "--priority", "4", "--json")
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["args"]["count"] == 3 and job["priority"] == 4 and job["number"] == 1
    assert job["enqueued"]["origin"] == "cli"
    listing = json.loads(monq(monq_env, "jobs", "--json").stdout)
    assert listing["total_count"] == 1 and listing["jobs"][0]["_id"] == job["_id"]
    shown = monq(monq_env, "job", "1")
    assert "monq.jobs.example.ArgsJob" in shown.stdout and "enqueue_job" in shown.stdout
    held = monq(monq_env, "hold", "1")
    assert held.returncode == 0 and "held job #1 (pending, held)" in held.stdout
    again = monq(monq_env, "hold", "1")
    assert again.returncode == 5
    assert again.stderr.strip() == "monq: error: cannot hold job #1: it is pending and held " \
                                   "already"
    assert monq(monq_env, "kill", job["_id"]).returncode == 0
    finished = json.loads(monq(monq_env, "jobs", "--finished", "--json").stdout)
    assert finished["jobs"][0]["state"] == "killed"


@pytest.mark.parametrize(("args", "code", "message"), [
    (["enqueue", "monq.nosuch.Job"], 2, "unknown job type 'monq.nosuch.Job'"),
    (["enqueue", "monq.jobs.example.ArgsJob"], 2, "missing required argument 'name'"),
    (["enqueue", "monq.jobs.example.ArgsJob", "name=x", "count=many"], 2,
     "argument 'count': expected an integer, got 'many'"),
    (["enqueue", "monq.jobs.example.DummyJob", "novalue"], 2, "expected key=value"),
    (["enqueue", "monq.jobs.example.DummyJob", "--args", "[1]"], 2, "--args must be a JSON"),
    (["enqueue", "monq.jobs.example.DummyJob", "--at", "tomorrow"], 2, "--at: not an ISO"),
    (["enqueue", "monq.jobs.example.DummyJob", "--at", "2030-01-01T00:00:00"], 2,
     "--at: give a time zone"),
    (["job", "42"], 4, "no job 42"),
    (["kill", "abc"], 2, "not a job id or number: 'abc'"),
    (["jobs", "--state", "sleeping"], 2, "invalid choice"),
])
def test_bad_input_is_one_line(monq_env: dict[str, str], args: list[str], code: int,
                               message: str) -> None:
    result = monq(monq_env, *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(monq(monq_env, "jobs", "--json").stdout)["total_count"] == 0


@pytest.mark.slow
def test_enqueue_wait_exits_non_zero_for_a_failing_job(monq_env: dict[str, str],
                                                       start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker()
    ok = monq(monq_env, "enqueue", "monq.jobs.example.DummyJob", "sleep=0.2", "--wait")
    assert ok.returncode == 0 and "job #1 complete" in ok.stdout
    bad = monq(monq_env, "enqueue", "monq.jobs.example.FailingJob", "message=broken",
               "--wait")
    assert bad.returncode == 6
    assert "job #2 error: RuntimeError: broken" in bad.stdout


def test_output_cut_short_by_a_pipe_is_no_error(monq_env: dict[str, str]) -> None:
    assert monq(monq_env, "enqueue", "monq.jobs.example.ArgsJob", "name=x").returncode == 0
    piped = subprocess.run(f"{MONQ} job 1 | head -n 1", shell=True, capture_output=True,  # noqa: S602 - our own command line
                           text=True, env={**monq_env, "PYTHONPATH": str(ROOT)}, timeout=60,
                           check=False)
    assert piped.stdout.strip().startswith("_id:")
    assert piped.stderr == ""
