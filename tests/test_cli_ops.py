"""`monq` on MongoDB directly: users and roles, maintenance, workers, history (table,
chart, JSON), events, ``jobs --watch``, MONQ_ defaults, and bad input as one line with
an exit code and nothing changed. Commands run in this process through `monq.cli.main`;
the ones that follow until a signal (``events``, ``jobs --watch``) run as the installed
executable, and tests/test_cli_wiring.py runs one command of each family that way."""

import io
import json
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest
from bson import ObjectId

from monq.cli.backend import DirectBackend
from monq.cli.jobs import follow
from monq.core.config import Config
from monq.core.store import Store, layout
from monq.core.store.events import event_id, new_event
from tests.conftest import ROOT
from tests.helpers import CliResult, read_until, run_cli, spawn_monq, wait_for_line

PASSWORD = "a-long-password-1\n"


def monq(env: dict[str, str], *args: str, input: str | None = None) -> CliResult:
    return run_cli(*args, env=env, input=input)


def ok(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = monq(env, *args, input=input)
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


@pytest.fixture
def db(db_url: str) -> Iterator[Any]:
    """The test's database, for seeding and checking what the CLI did."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(db_url)
    try:
        yield client.get_default_database()
    finally:
        client.close()


def test_users_and_roles(monq_env: dict[str, str], db: Any) -> None:
    role = json.loads(ok(monq_env, "roles", "create", "ops", "--perm",
                         "job://monq.jobs.*/r", "--json"))
    assert role["kind"] == "role" and role["perm"] == ["job://monq.jobs.*/r"]
    assert "granted: roles -; permissions job://monq.jobs.*/r, api://monq.api.jobs" in ok(
        monq_env, "roles", "grant", "ops", "api://monq.api.jobs")
    user = json.loads(ok(monq_env, "users", "create", "ann", "--email", "ann@example.com",
                         "--role", "ops", "--password-stdin", "--json", input=PASSWORD))
    assert user["role"] == ["ops"] and "password" not in user
    listing = json.loads(ok(monq_env, "users", "list", "--json"))
    assert [u["name"] for u in listing] == ["ann"]
    assert "ann@example.com" in ok(monq_env, "users", "list")
    assert "ops" in ok(monq_env, "roles", "list")
    before = db[layout.ROLE].find_one({"name": "ann"})
    ok(monq_env, "users", "passwd", "ann", "--password-stdin", input="another-password-2\n")
    after = db[layout.ROLE].find_one({"name": "ann"})
    assert after["password"] != before["password"]
    assert after["token_version"] == before["token_version"] + 1  # old tokens revoked
    assert "ann is inactive" in ok(monq_env, "users", "deactivate", "ann")
    assert json.loads(ok(monq_env, "users", "show", "ann", "--json"))["is_active"] is False
    ok(monq_env, "users", "activate", "ann")
    shown = ok(monq_env, "users", "show", "ann")
    assert "is_active: yes" in shown and "role: ops" in shown
    ok(monq_env, "roles", "create", "viewer")
    assert "granted" in ok(monq_env, "users", "grant", "ann", "viewer", "cop")
    assert "unchanged" in ok(monq_env, "users", "grant", "ann", "cop")
    assert "revoked: roles ops; permissions -" in ok(monq_env, "users", "revoke", "ann",
                                                     "viewer", "cop")
    in_use = monq(monq_env, "roles", "remove", "ops")
    assert in_use.returncode == 5
    assert in_use.stderr == "monq: error: role 'ops' is still given to someone\n"
    ok(monq_env, "users", "remove", "ann")
    assert "removed role ops" in ok(monq_env, "roles", "remove", "ops")
    assert monq(monq_env, "roles", "show", "ops").returncode == 4


@pytest.mark.parametrize(("args", "input", "code", "message"), [
    (["users", "create", "bob", "--email", "nope", "--password-stdin"], PASSWORD, 2,
     "email: not an email address"),
    (["users", "create", "bob", "--email", "b@example.com", "--password-stdin"], "short\n",
     2, "password: at least"),
    (["users", "create", "bob", "--email", "b@example.com"], "", 2,
     "use --password-stdin"),
    (["users", "create", "bob", "--email", "b@example.com", "--role", "nosuch",
      "--password-stdin"], PASSWORD, 2, "role: no role 'nosuch'"),
    (["users", "create", "bob"], None, 2, "the following arguments are required: --email"),
    (["users", "passwd", "nobody", "--password-stdin"], PASSWORD, 4, "no user 'nobody'"),
    (["roles", "create", "r", "--perm", "everything"], None, 2, "everything"),
    (["roles", "create", "bad name"], None, 2, "name: 1 to 64 letters"),
    (["maintenance", "sometimes"], None, 2, "invalid choice: 'sometimes'"),
    (["history", "--minutes", "0"], None, 2, "--minutes: at least 1"),
    (["history", "--chart", "--width", "3"], None, 2, "--width: at least 10"),
    (["events", "--since", "yesterday"], None, 2, "--since: not an ISO 8601 time"),
    (["events", "--job", "99", "--once"], None, 4, "no job 99"),
    (["jobs", "--watch", "--interval", "0"], None, 2, "--interval: must be more than 0"),
    (["jobs", "--limit", "many"], None, 2, "invalid int value: 'many'"),
    (["workers", "--bogus"], None, 2, "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_changes_nothing(monq_env: dict[str, str], args: list[str],
                                                   input: str | None, code: int,
                                                   message: str) -> None:
    result = monq(monq_env, *args, input=input)
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(ok(monq_env, "users", "list", "--json")) == []
    assert json.loads(ok(monq_env, "roles", "list", "--json")) == []
    assert json.loads(ok(monq_env, "maintenance", "status", "--json")) == {
        "global": False, "names": []}


def test_a_bad_environment_default_is_bad_usage(monq_env: dict[str, str]) -> None:
    result = monq({**monq_env, "MONQ_JOBS_STATE": "sleeping"}, "jobs")
    assert result.returncode == 2
    assert result.stderr == "monq: error: MONQ_JOBS_STATE: invalid choice 'sleeping' " \
                            "(see: monq jobs --help)\n"


def test_unreachable_database_or_server_exits_3(monq_env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = monq({**monq_env, "MONQ_MONGODB_URL": f"mongodb://127.0.0.1:{port}/x",
                 "MONQ_MONGODB_CONNECT_TIMEOUT_S": "0.5"}, "workers")
    assert down.returncode == 3 and down.stderr.count("\n") == 1
    server = monq(monq_env, "--server", f"http://127.0.0.1:{port}", "--token", "t", "jobs")
    assert server.returncode == 3
    assert server.stderr.startswith(f"monq: error: monq server http://127.0.0.1:{port}/api/v1 "
                                    "does not answer")


def test_maintenance_on_off_and_per_name(monq_env: dict[str, str]) -> None:
    assert ok(monq_env, "maintenance", "on") == "maintenance: on\n"
    state = json.loads(ok(monq_env, "maintenance", "on", "--name", "a.Job", "--json"))
    assert state == {"global": True, "names": ["a.Job"]}
    assert "paused job names: a.Job" in ok(monq_env, "maintenance", "status")
    assert json.loads(ok(monq_env, "maintenance", "off", "--json"))["global"] is False
    assert json.loads(ok(monq_env, "maintenance", "off", "--name", "a.Job", "--json")) == {
        "global": False, "names": []}


def test_workers_alive_or_dead_by_heartbeat(monq_env: dict[str, str], db: Any) -> None:
    now = datetime.now(UTC)
    workers = db[layout.WORKER]
    workers.insert_many([
        {"_id": "host1:10:a", "kind": "worker", "host": "host1", "pid": 10, "pool": "default",
         "concurrency": 4, "tags": ["gpu"], "started_at": now, "heartbeat": now,
         "jobs": [{"_id": "x", "number": 5, "name": "a.Job"}]},
        {"_id": "host2:11:b", "kind": "worker", "host": "host2", "pid": 11, "pool": "default",
         "concurrency": 2, "tags": [], "started_at": now - timedelta(minutes=3),
         "heartbeat": now - timedelta(minutes=2), "jobs": []},
        {"_id": "host3:12:c", "kind": "worker", "host": "host3", "pid": 12,
         "started_at": now - timedelta(hours=3), "heartbeat": now - timedelta(hours=2)},
    ])
    listed = json.loads(ok(monq_env, "workers", "--json"))
    assert [(w["_id"], w["alive"]) for w in listed] == [("host1:10:a", True),
                                                        ("host2:11:b", False)]
    assert 110 < listed[1]["heartbeat_age_s"] < 200
    assert [w["_id"] for w in json.loads(ok(monq_env, "workers", "--alive", "--json"))] == [
        "host1:10:a"]
    text = ok(monq_env, "workers")
    assert "host1:10:a" in text and "alive" in text and "#5" in text and "gpu" in text
    assert text.endswith("1 alive, 1 dead\n")


def test_history_as_table_json_and_chart(monq_env: dict[str, str], db: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    db[layout.HISTORY].insert_many([
        {"resolution": "second", "created": now - timedelta(seconds=90), "pending": 6,
         "total": 6, "jobs": [{"name": "a.Job", "state": "pending", "n": 6}]},
        {"resolution": "second", "created": now - timedelta(seconds=30), "pending": 1,
         "running": 3, "total": 4, "jobs": []},
        {"resolution": "second", "created": now - timedelta(minutes=20), "pending": 9,
         "total": 9, "jobs": []},
    ])
    rows = json.loads(ok(monq_env, "history", "--minutes", "5", "--json"))
    assert [(r["pending"], r.get("running", 0)) for r in rows] == [(6, 0), (1, 3)]
    table = ok(monq_env, "history", "--minutes", "5")
    assert table.splitlines()[0].split() == ["CREATED", "PENDING", "RUNNING", "DEFERRED",
                                             "FAILED", "TOTAL"]
    assert table.endswith("2 rows\n")
    chart = ok(monq_env, "history", "--minutes", "5", "--chart", "--width", "30").splitlines()
    assert chart[0].startswith("waiting |") and chart[0].endswith("| max 6")
    assert chart[1].startswith("running |") and chart[1].endswith("| max 3")
    assert "█" in chart[0] and chart[2].endswith("UTC")


@pytest.mark.slow
def until_following(env: dict[str, str], follower: Any) -> str:
    """What `monq events` printed until it surely follows: it follows from the moment
    it started, which we cannot see, so enqueue until it prints a new event."""
    seen = ""
    for _ in range(60):
        ok(env, "enqueue", "monq.jobs.example.DummyJob")
        found, lines = read_until(follower, "enqueue_job", timeout_s=1)
        seen += lines
        if found:
            break
    return seen


def test_events_filtered_since_and_followed(monq_env: dict[str, str]) -> None:
    ok(monq_env, "enqueue", "monq.jobs.example.DummyJob")
    ok(monq_env, "enqueue", "monq.jobs.example.ArgsJob", "name=x")
    ok(monq_env, "hold", "2")
    lines = ok(monq_env, "events", "--since", "1m", "--once", "--json").splitlines()
    events = [json.loads(line) for line in lines]
    assert [(e["name"], e["data"]["number"]) for e in events] == [
        ("enqueue_job", 1), ("enqueue_job", 2), ("hold_job", 2)]
    assert all(e["channel"] == "queue" for e in events)
    held = ok(monq_env, "events", "--since", "1m", "--once", "--name", "hold_job")
    assert held.count("\n") == 1 and "hold_job" in held and "#2 monq.jobs.example.ArgsJob" \
        in held
    mine = [json.loads(x) for x in ok(monq_env, "events", "--since", "1m", "--once",
                                      "--job", "1", "--json").splitlines()]
    assert [e["name"] for e in mine] == ["enqueue_job"]
    assert ok(monq_env, "events", "--once", "--channel", "message", "--since", "1h") == ""
    with spawn_monq("events", "--interval", "0.1", env={**monq_env, "PYTHONPATH": str(ROOT)}
                    ) as follower:
        seen = until_following(monq_env, follower)
        ok(monq_env, "resume", "2")
        seen += wait_for_line(follower, "resume_job", timeout_s=30)
        assert "hold_job" not in seen  # it started at now, not in the past
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0


def test_events_from_now_pass_over_those_of_the_second_they_start_in(
        monq_env: dict[str, str], db: Any) -> None:
    """Event ids tell their second, no finer: a follower started from now passes over
    the events there are of that second, rather than print them as new."""
    time.sleep(1 - time.time() % 1 + 0.01)  # at the start of a second
    before = {**new_event("hold_job", channel="queue", author="alice", data={
        "_id": ObjectId(), "number": 99, "name": "monq.jobs.example.ArgsJob",
        "state": "pending"}), "seq": event_id()}
    db[layout.EVENT].insert_one(before)
    with spawn_monq("events", "--interval", "0.1", env={**monq_env, "PYTHONPATH": str(ROOT)}
                    ) as follower:
        seen = until_following(monq_env, follower)
        assert "enqueue_job" in seen and "#99" not in seen, seen
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0


@pytest.mark.slow
def test_jobs_watch_redraws_until_ctrl_c(monq_env: dict[str, str]) -> None:
    env = {**monq_env, "PYTHONPATH": str(ROOT)}
    with spawn_monq("jobs", "--watch", "--interval", "0.2", env=env) as watcher:
        wait_for_line(watcher, "0 of 0 jobs", timeout_s=30)
        ok(monq_env, "enqueue", "monq.jobs.example.DummyJob")
        frame = wait_for_line(watcher, "1 of 1 jobs", timeout_s=30)
        assert "monq.jobs.example.DummyJob" in frame and "pending" in frame
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(10) == 0
    with spawn_monq("jobs", "--watch", "--json", "--interval", "0.2", env=env) as watcher:
        assert json.loads(wait_for_line(watcher, "total_count").splitlines()[-1])[
            "total_count"] == 1
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(10) == 0


def test_options_take_their_monq_environment_defaults(monq_env: dict[str, str]) -> None:
    for _ in range(3):
        ok(monq_env, "enqueue", "monq.jobs.example.DummyJob")
    listing = json.loads(ok({**monq_env, "MONQ_JSON": "1", "MONQ_JOBS_LIMIT": "2"}, "jobs"))
    assert listing["total_count"] == 3 and len(listing["jobs"]) == 2
    ok({**monq_env, "MONQ_ENQUEUE_PRIORITY": "7"}, "enqueue", "monq.jobs.example.DummyJob")
    assert json.loads(ok(monq_env, "job", "4", "--json"))["job"]["priority"] == 7


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_wait_redraws_one_progress_bar_on_a_terminal(store: Store, config: Config
                                                           ) -> None:
    backend = DirectBackend(store, config, user="ann")
    job = await backend.enqueue("monq.jobs.example.DummyJob", {}, {"hold": True})
    await backend.act("kill", job["_id"])
    err = Terminal()
    final = await follow(backend, job["_id"], err, poll_s=0.01)
    assert final["state"] == "killed" and final["enqueued"]["by"] == "ann"
    assert err.getvalue() == "\r[                              ]   0% killed\n"
