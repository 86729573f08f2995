"""`monq schedules ...` (in this process through `monq.cli.main`), and three `monq
scheduler` processes (one of them SIGKILLed) enqueueing exactly one job per tick."""

from __future__ import annotations

import json
import signal
import time
from datetime import timedelta
from typing import Any

import pymongo
import pytest

from monq.core.store import layout
from tests.conftest import ROOT
from tests.helpers import CliResult, run_cli, spawn_monq, wait_for_log

DUMMY = "monq.jobs.example.DummyJob"


def monq(env: dict[str, str], *args: str) -> CliResult:
    return run_cli(*args, env=env)


def test_add_list_show_update_enable_disable_remove(monq_env: dict[str, str]) -> None:
    added = monq(monq_env, "schedules", "add", "nightly", DUMMY, "30 2 * * *", "sleep=1",
                 "--timezone", "Europe/Berlin", "--jitter", "10", "--catchup", "none")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("schedule nightly added: 30 2 * * * (Europe/Berlin), "
                                   "enabled, next tick ")
    listed = json.loads(monq(monq_env, "schedules", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["nightly"]
    assert listed[0]["args"] == {"sleep": 1.0, "steps": 10} and listed[0]["catchup"] == "none"
    table = monq(monq_env, "schedules", "list").stdout
    assert "NAME" in table and "nightly" in table and "1 schedules" in table
    shown = json.loads(monq(monq_env, "schedules", "show", listed[0]["_id"], "--json").stdout)
    assert shown == listed[0]
    assert "Europe/Berlin" in monq(monq_env, "schedules", "show", "nightly").stdout
    changed = monq(monq_env, "schedules", "update", "nightly", "--cron", "*/5 * * * *",
                   "--overlap", "enqueue", "--json")
    assert changed.returncode == 0, changed.stderr
    data = json.loads(changed.stdout)
    assert data["cron"] == "*/5 * * * *" and data["overlap"] == "enqueue"
    assert data["args"] == {"sleep": 1.0, "steps": 10}
    disabled = monq(monq_env, "schedules", "disable", "nightly")
    assert disabled.returncode == 0 and ", disabled," in disabled.stdout
    assert json.loads(monq(monq_env, "schedules", "enable", "nightly", "--json").stdout
                      )["enabled"] is True
    removed = monq(monq_env, "schedules", "remove", "nightly")
    assert removed.returncode == 0 and removed.stdout == "schedule nightly removed\n"
    assert json.loads(monq(monq_env, "schedules", "list", "--json").stdout) == []


@pytest.mark.parametrize(("args", "code", "message"), [
    (["add", "s", DUMMY, "61 * * * *"], 2, "cron: invalid cron expression '61 * * * *'"),
    (["add", "s", DUMMY, "* * * * *", "--timezone", "Mars/Olympus"], 2,
     "timezone: unknown time zone 'Mars/Olympus'"),
    (["add", "s", "monq.nosuch.Job", "* * * * *"], 2, "job: unknown job type"),
    (["add", "s", DUMMY, "* * * * *", "sleep=long"], 2, "args: argument 'sleep'"),
    (["add", "s", DUMMY, "* * * * *", "--catchup", "some"], 2, "invalid choice"),
    (["add", "s", DUMMY, "* * * * *", "--jitter", "-3"], 2, "jitter_s: expected seconds"),
    (["show", "nothing"], 4, "no schedule nothing"),
    (["enable", "nothing"], 4, "no schedule nothing"),
    (["remove", "nothing"], 4, "no schedule nothing"),
])
def test_bad_input_is_one_line_and_changes_nothing(monq_env: dict[str, str],
                                                   args: list[str], code: int,
                                                   message: str) -> None:
    result = monq(monq_env, "schedules", *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(monq(monq_env, "schedules", "list", "--json").stdout) == []


def scheduled_jobs(db_url: str) -> list[dict[str, Any]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(db_url, tz_aware=True)
    try:
        db = client.get_default_database()
        return [d for name in (layout.QUEUE, layout.JOURNAL) for d in db[name].find()]
    finally:
        client.close()


def pending(env: dict[str, str]) -> int:
    """The every-second schedule's ticks claimed and not finished."""
    return int(json.loads(monq(env, "schedules", "show", "every-second", "--json").stdout
                          )["pending"])


def wait_for_jobs(db_url: str, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(scheduled_jobs(db_url)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} jobs enqueued"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.chaos
def test_three_scheduler_processes_enqueue_each_tick_once(monq_env: dict[str, str],
                                                          db_url: str) -> None:
    assert monq(monq_env, "schedules", "add", "every-second", DUMMY, "* * * * * *",
                "--catchup", "all", "--overlap", "enqueue").returncode == 0
    env = {**monq_env, "PYTHONPATH": str(ROOT), "MONQ_SCHEDULER_INTERVAL_S": "0.1",
           "MONQ_SCHEDULER_STALE_S": "1"}
    with spawn_monq("scheduler", env=env) as first, spawn_monq("scheduler", env=env) as second, \
            spawn_monq("scheduler", env=env) as third:
        # all three contend: each wins a tick now and then (a third of them each)
        for process in (first, second, third):
            wait_for_log(process, "action=tick_enqueued")
        first.send_signal(signal.SIGKILL)
        first.wait()
        # the other two go on, one job a tick, also for a tick the dead one had claimed
        killed_at = len(scheduled_jobs(db_url))
        wait_for_jobs(db_url, killed_at + 3)
        # a tick the dead one had claimed stays pending until it is stale (1 s here) and
        # a survivor takes it over: wait for that, however fast the ticks came meanwhile
        deadline = time.monotonic() + 60
        while pending(monq_env) and time.monotonic() < deadline:
            time.sleep(0.1)
        for process in (second, third):
            process.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0 and third.wait(30) == 0
    ticks = sorted(d["enqueued"]["tick"] for d in scheduled_jobs(db_url))
    assert len(ticks) >= 5
    assert len(set(ticks)) == len(ticks)  # none twice
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))]  # none lost
    shown = json.loads(monq(monq_env, "schedules", "show", "every-second", "--json").stdout)
    assert shown["pending"] == 0
