"""The installed `monq` executable, one command of each family: the console script,
argument parsing and the MONQ_ environment reach the command as they do for a user.
What each command does is checked in-process (tests/test_cli_*.py) through the same
`monq.cli.main`; following commands (``events``, ``jobs --watch``), ``serve``,
``worker``, ``scheduler`` and ``up`` run as processes in their own tests."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT
from tests.helpers import run_monq


@pytest.mark.slow
def test_each_command_family_runs_as_the_installed_executable(
        monq_env: dict[str, str]) -> None:
    env = {**monq_env, "PYTHONPATH": str(ROOT)}

    def ok(*args: str, input: str | None = None) -> str:
        result = run_monq(*args, env=env, input=input)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "indexes" in ok("db", "init")
    job = json.loads(ok("enqueue", "monq.jobs.example.ArgsJob", "name=x", "--json"))
    # an option's default from the process environment
    listing = json.loads(run_monq("jobs", env={**env, "MONQ_JSON": "1"}).stdout)
    assert listing["jobs"][0]["_id"] == job["_id"]
    assert "created user ann" in ok("users", "create", "ann", "--email", "ann@example.com",
                                    "--password-stdin", input="a-long-password-1\n")
    assert json.loads(ok("maintenance", "status", "--json")) == {"global": False,
                                                                  "names": []}
    assert json.loads(ok("history", "--json")) == []
    assert json.loads(ok("schedules", "list", "--json")) == []
    assert json.loads(ok("notify", "list", "--json"))["notifications"] == []
