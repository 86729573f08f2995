"""`monq` with ``--server``: every command over HTTP to a real `monq serve` process,
within the permissions of the logged-in user, with the server's errors as the CLI's
exit codes. The commands run in this process through `monq.cli.main`."""

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from monq.core import embedded
from tests.conftest import ROOT
from tests.helpers import CliResult, run_cli, run_monq, spawn_monq, wait_for_line

ADMIN_PASSWORD = "admin-secret-password"


@pytest.fixture
def server(monq_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A `monq serve` process on a free port; its base URL. The env gets a config home
    of its own for the token file."""
    monq_env.update(MONQ_API_PORT=str(embedded.free_port()),
                    MONQ_API_ADMIN_PASSWORD=ADMIN_PASSWORD, PYTHONPATH=str(ROOT),
                    XDG_CONFIG_HOME=str(tmp_path / "config"))
    with spawn_monq("serve", env=monq_env) as process:
        line = wait_for_line(process, "API at")
        match = re.search(r"API at (http://\S+)/api/v1", line)
        assert match, line
        yield match.group(1)


def remote(env: dict[str, str], url: str, *args: str, input: str | None = None,
           **extra: str) -> CliResult:
    """`monq ARGS` against the server, without the database URL (it must not need it)."""
    clean = {k: v for k, v in env.items() if k != "MONQ_MONGODB_URL"}
    clean.update(MONQ_MONGODB_URL="mongodb://127.0.0.1:9/nowhere", MONQ_SERVER=url, **extra)
    return run_cli(*args, env=clean, input=input)


def remote_process(env: dict[str, str], url: str, *args: str, input: str | None = None
                   ) -> subprocess.CompletedProcess[str]:
    """`remote` as the installed executable: proves that ``--server`` is wired."""
    clean = {k: v for k, v in env.items() if k != "MONQ_MONGODB_URL"}
    clean.update(MONQ_MONGODB_URL="mongodb://127.0.0.1:9/nowhere", MONQ_SERVER=url)
    return run_monq(*args, env=clean, input=input)


def ok(env: dict[str, str], url: str, *args: str, input: str | None = None,
       **extra: str) -> str:
    result = remote(env, url, *args, input=input, **extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def login(env: dict[str, str], url: str, user: str, password: str) -> None:
    out = ok(env, url, "login", "--username", user, "--password-stdin", input=password + "\n")
    assert f"logged in to {url} as {user}" in out


@pytest.mark.slow
def test_admin_operates_everything_over_http(monq_env: dict[str, str], server: str,
                                             tmp_path: Path) -> None:
    no_token = remote_process(monq_env, server, "jobs")
    assert no_token.returncode == 1 and "monq login --server" in no_token.stderr
    logged_in = remote_process(monq_env, server, "login", "--username", "admin",
                               "--password-stdin", input=ADMIN_PASSWORD + "\n")
    assert logged_in.returncode == 0, logged_in.stderr
    assert f"logged in to {server} as admin" in logged_in.stdout
    token_file = tmp_path / "config" / "monq" / "tokens.json"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert list(json.loads(token_file.read_text())) == [server + "/api/v1"]

    job = json.loads(ok(monq_env, server, "enqueue", "monq.jobs.example.ArgsJob", "name=x",
                        "count=3", "--priority", "4", "--json"))
    assert job["args"]["count"] == 3 and job["enqueued"]["origin"] == "api"
    assert job["enqueued"]["by"] == "admin"
    listing = json.loads(ok(monq_env, server, "jobs", "--json"))
    assert listing["total_count"] == 1 and listing["jobs"][0]["_id"] == job["_id"]
    shown = json.loads(ok(monq_env, server, "job", "1", "--json"))
    assert shown["job"]["number"] == 1 and [e["name"] for e in shown["events"]] == [
        "enqueue_job"]
    assert "held job #1 (pending, held)" in ok(monq_env, server, "hold", "1")
    again = remote(monq_env, server, "hold", "1")
    assert (again.returncode, again.stderr) == (
        5, "monq: error: cannot hold job #1: it is pending and held already\n")
    missing = remote(monq_env, server, "job", "42")
    assert (missing.returncode, missing.stderr) == (4, "monq: error: no job 42\n")
    bad = remote(monq_env, server, "enqueue", "monq.jobs.example.ArgsJob", "name=x",
                 "count=many")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "count" in bad.stderr
    events = [json.loads(line) for line in ok(monq_env, server, "events", "--job", "1",
                                              "--since", "1h", "--once", "--json"
                                              ).splitlines()]
    assert [e["name"] for e in events] == ["enqueue_job", "hold_job"]
    stream = [json.loads(line) for line in ok(monq_env, server, "events", "--since", "1h",
                                              "--once", "--json").splitlines()]
    assert [(e["name"], e["data"]["number"]) for e in stream] == [("enqueue_job", 1),
                                                                 ("hold_job", 1)]
    assert ok(monq_env, server, "kill", job["_id"]).startswith("killed job #1 (killed)")
    assert json.loads(ok(monq_env, server, "jobs", "--finished", "--json"))["jobs"][0][
        "state"] == "killed"
    assert json.loads(ok(monq_env, server, "history", "--json")) == []
    assert "waiting |" in ok(monq_env, server, "history", "--chart", "--width", "20")
    assert json.loads(ok(monq_env, server, "workers", "--json")) == []
    assert json.loads(ok(monq_env, server, "maintenance", "on", "--json"))["global"] is True
    assert ok(monq_env, server, "maintenance", "off") == "maintenance: off\n"

    ok(monq_env, server, "roles", "create", "viewer", "--perm", "api://monq.api.jobs*",
       "--perm", "job://monq.jobs.example.*/r")
    ok(monq_env, server, "users", "create", "bob", "--email", "bob@example.com", "--role",
       "viewer", "--password-stdin", input="bob-password-1\n")
    users = json.loads(ok(monq_env, server, "users", "list", "--json"))
    assert sorted(u["name"] for u in users) == ["admin", "bob"]
    assert json.loads(ok(monq_env, server, "users", "show", "bob", "--json"))["role"] == [
        "viewer", ]
    assert "granted" in ok(monq_env, server, "roles", "grant", "viewer", "api://monq.api.workers")
    ok(monq_env, server, "users", "passwd", "bob", "--password-stdin",
       input="bob-password-2\n")

    # bob, with a token of his own: he sees jobs but may not act on them or manage users
    bob_env = {**monq_env, "XDG_CONFIG_HOME": str(tmp_path / "bob")}
    wrong = remote(bob_env, server, "login", "--username", "bob", "--password-stdin",
                   input="bob-password-1\n")
    assert (wrong.returncode, wrong.stderr) == (1, "monq: error: wrong user name or password\n")
    login(bob_env, server, "bob", "bob-password-2")
    assert json.loads(ok(bob_env, server, "jobs", "--finished", "--json"))["total_count"] == 1
    assert json.loads(ok(bob_env, server, "workers", "--json")) == []
    refused = remote(bob_env, server, "restart", "1")
    assert (refused.returncode, refused.stderr) == (
        1, "monq: error: permission denied: job://monq.jobs.example.ArgsJob/x\n")
    users_refused = remote(bob_env, server, "users", "list")
    assert users_refused.returncode == 1 and "permission denied" in users_refused.stderr

    ok(monq_env, server, "users", "deactivate", "bob")
    revoked = remote(bob_env, server, "jobs")
    assert (revoked.returncode, revoked.stderr) == (1, "monq: error: invalid or expired token\n")
    ok(monq_env, server, "users", "remove", "bob")
    assert ok(monq_env, server, "roles", "remove", "viewer") == "removed role viewer\n"
    assert ok(monq_env, server, "logout") == f"logged out of {server}\n"
    assert remote(monq_env, server, "jobs").returncode == 1


@pytest.mark.slow
def test_enqueue_wait_over_http_exits_6_for_a_failing_job(
        monq_env: dict[str, str], server: str, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker()
    login(monq_env, server, "admin", ADMIN_PASSWORD)
    done = remote(monq_env, server, "enqueue", "monq.jobs.example.DummyJob", "sleep=0.3",
                  "steps=3", "--wait")
    assert done.returncode == 0 and "job #1 complete" in done.stdout
    assert "[##########" in done.stderr and "complete" in done.stderr  # plain progress lines
    failed = remote(monq_env, server, "enqueue", "monq.jobs.example.FailingJob",
                    "message=broken", "--wait", "--json")
    assert failed.returncode == 6
    assert json.loads(failed.stdout)["state"] == "error"
    workers = json.loads(ok(monq_env, server, "workers", "--json"))
    assert len(workers) == 1 and workers[0]["alive"] is True
