"""What the CLI says to a person: actions in words (a kill requested, a restart's new
job), one form for yes/no and times in every table, usage errors that name the
arguments as --help does and point at the command's own help, one exit code for an
unknown job type, a disabled schedule without a next tick, and ``events --once``."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from monq.cli.output import cell, details, table
from monq.queue.queue import Queue, WorkerRef
from tests.helpers import CliResult, run_cli, run_cli_async

TIME = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b")


def monq(env: dict[str, str], *args: str) -> CliResult:
    """In this process (tests/test_cli_wiring.py runs the executable)."""
    return run_cli(*args, env=env)


async def test_kill_of_a_running_job_says_it_was_requested_and_restart_names_the_new_job(
        monq_env: dict[str, str], queue: Queue) -> None:
    job = await queue.enqueue("monq.jobs.example.DummyJob")
    claim = await queue.claim(WorkerRef("w", "h", 1))
    assert claim is not None and claim.job.id == job.id
    killed = await run_cli_async("kill", "1", env=monq_env)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == ("kill of job #1 requested: it is running, its worker "
                                     "stops it (watch: monq job 1)")
    await queue.mark_killed(job.id, claim.token)
    restarted = await run_cli_async("restart", "1", env=monq_env)
    # the new job's number comes from the CLI process's own block of numbers, above
    # the block this test's process still holds
    found = re.fullmatch(r"restarted job #1: job #(\d+) replaces it \(pending\)",
                         restarted.stdout.strip())
    assert found is not None, restarted.stdout
    new = found[1]
    held = await run_cli_async("hold", new, env=monq_env)
    assert held.stdout.strip() == f"held job #{new} (pending, held)"
    removed = await run_cli_async("remove", new, env=monq_env)
    assert removed.stdout.strip() == f"removed job #{new} (removed)"


def test_tables_and_details_show_yes_no_and_utc_times_alike() -> None:
    when = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
    assert [cell(v) for v in (True, False, None, when, "2026-03-01T13:30:05+01:00")] \
        == ["yes", "no", "", "2026-03-01 12:30:05", "2026-03-01 12:30:05"]
    text = table([{"a": True, "b": None, "c": when}], ["a", "b", "c"])
    assert text.splitlines()[1].split() == ["yes", "2026-03-01", "12:30:05"]
    shown = details({"held": False, "enqueued": {"at": when.isoformat(), "by": "ann"}})
    assert "enqueued.at: 2026-03-01 12:30:05" in shown and "held: no" in shown
    assert "True" not in shown and "None" not in shown and "+00:00" not in shown


def test_jobs_job_and_schedules_print_the_same_forms(monq_env: dict[str, str]) -> None:
    assert monq(monq_env, "enqueue", "monq.jobs.example.DummyJob", "--hold").returncode == 0
    assert monq(monq_env, "schedules", "add", "nightly", "monq.jobs.example.DummyJob",
                "0 3 * * *").returncode == 0
    outputs = [monq(monq_env, *args).stdout for args in (
        ("jobs",), ("job", "1"), ("schedules", "list"), ("schedules", "show", "nightly"),
        ("users", "show", "admin"))]
    for out in outputs:
        assert not re.search(r"\bTrue\b|\bFalse\b|\bNone\b|T\d\d:\d\d:\d\d", out), out
    assert all(TIME.search(out) for out in outputs[:4])
    assert re.search(r"held: yes", outputs[1])


def test_a_disabled_schedule_shows_no_next_tick(monq_env: dict[str, str]) -> None:
    added = monq(monq_env, "schedules", "add", "off", "monq.jobs.example.DummyJob",
                 "*/5 * * * *", "--disabled")
    assert added.stdout.strip() == ("schedule off added: */5 * * * * (UTC), disabled, "
                                    "no next tick")
    row = monq(monq_env, "schedules", "list").stdout.splitlines()[1].split()
    assert row[-1] == "no"  # ENABLED, and nothing under NEXT_TICK or LAST_TICK
    shown = monq(monq_env, "schedules", "show", "off").stdout
    assert re.search(r"next_tick:\s*$", shown, flags=re.M)
    enabled = monq(monq_env, "schedules", "enable", "off").stdout
    assert "next tick 20" in enabled


def test_usage_errors_name_arguments_as_help_does_and_point_at_the_command(
        monq_env: dict[str, str]) -> None:
    for args, message in (
            (["schedules", "add"], "the following arguments are required: NAME, JOB, CRON "
                                   "(see: monq schedules add --help)"),
            (["enqueue"], "the following arguments are required: JOB "
                          "(see: monq enqueue --help)"),
            (["maintenance"], "the following arguments are required: on|off|status "
                              "(see: monq maintenance --help)"),
            (["kill", "--bogus", "1"], "unrecognized arguments: --bogus "
                                       "(see: monq kill --help)"),
            (["schedules", "list", "--bogus"], "unrecognized arguments: --bogus "
                                               "(see: monq schedules list --help)")):
        out = monq(monq_env, *args)
        assert out.returncode == 2
        assert out.stderr.strip() == f"monq: error: {message}", out.stderr


def test_an_unknown_job_type_is_exit_2_everywhere_and_says_how_to_fix_it(
        monq_env: dict[str, str]) -> None:
    enqueued = monq(monq_env, "enqueue", "myproject.jobs.Report")
    scheduled = monq(monq_env, "schedules", "add", "s", "myproject.jobs.Report", "* * * * *")
    assert enqueued.returncode == scheduled.returncode == 2
    for out in (enqueued, scheduled):
        assert "unknown job type 'myproject.jobs.Report'" in out.stderr
        assert "the API server, every worker and the CLI must each be able to import it" \
            in out.stderr and "PYTHONPATH" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_events_once_looks_back_and_says_when_there_is_nothing(
        monq_env: dict[str, str]) -> None:
    empty = monq(monq_env, "events", "--once")
    assert empty.returncode == 0 and empty.stdout == ""
    assert empty.stderr.startswith("monq: no events since ")
    assert "(--since 1h looks further back)" in empty.stderr
    assert monq(monq_env, "enqueue", "monq.jobs.example.DummyJob").returncode == 0
    seen = monq(monq_env, "events", "--once")  # no --since: the last ten minutes
    assert "enqueue_job" in seen.stdout and "#1 monq.jobs.example.DummyJob" in seen.stdout


def test_event_lines_of_progress_and_summaries_read_as_words() -> None:
    from monq.cli.events import event_line

    progress = {"created": "2026-01-01T12:00:00+00:00", "channel": "queue",
                "name": "progress_job", "data": {"number": 3, "name": "a.Job",
                                                 "state": "running", "progress": 0.5,
                                                 "message": "half"}}
    assert event_line(progress).endswith("#3 a.Job running 50% half")
    summary = {"created": "2026-01-01T12:00:00+00:00", "channel": "queue", "name": "summary",
               "data": {"counts": {"pending": 2, "running": 1}, "total": 3, "jobs": []}}
    assert event_line(summary).endswith("summary            total 3, pending 2, running 1")
