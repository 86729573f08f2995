"""What the CLI prints, as pure functions: tables, the progress bar, the history
chart, ``--since`` and the MONQ_ environment defaults of options."""

from datetime import UTC, datetime, timedelta

import pytest

from monq.cli import build_parser
from monq.cli.accounts import changed
from monq.cli.events import event_line, parse_since
from monq.cli.output import buckets, chart, final_line, progress_line, spark, table
from monq.core.errors import ValidationError

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_table_aligns_columns_under_an_upper_case_header() -> None:
    text = table([{"number": 1, "name": "a.B"}, {"number": 12, "name": None}],
                 ["number", "name"])
    assert text.splitlines() == ["NUMBER  NAME", "1       a.B", "12"]


def test_progress_line_and_final_line() -> None:
    job = {"number": 3, "state": "running", "progress": {"value": 0.5, "message": "half"}}
    assert progress_line(job, width=10) == "[#####     ]  50% running   half"
    assert progress_line({"state": "pending", "progress": None}, width=4) == \
        "[    ]   0% pending"
    failed = {"number": 3, "state": "error", "last_error": "Traceback\nRuntimeError: x\n"}
    assert final_line(failed) == "job #3 error: RuntimeError: x"
    assert final_line({"number": 4, "state": "complete", "last_error": None}) == \
        "job #4 complete"


def test_buckets_carry_a_row_until_the_next_and_take_the_maximum() -> None:
    rows = [{"created": (NOW + timedelta(seconds=5)).isoformat(), "pending": 2, "failed": 1},
            {"created": (NOW + timedelta(seconds=12)).isoformat(), "running": 4},
            {"created": (NOW + timedelta(seconds=14)).isoformat(), "running": 1}]
    points = buckets(rows, NOW, NOW + timedelta(seconds=40), 4)
    assert points == [{"waiting": 3, "running": 0}, {"waiting": 3, "running": 4},
                      {"waiting": 0, "running": 1}, {"waiting": 0, "running": 1}]


def test_chart_scales_both_series_to_one_maximum() -> None:
    assert spark([0, 1, 2, 4], 4) == " ▂▄█"
    assert spark([0, 0], 0) == "  "
    rows = [{"created": NOW.isoformat(), "pending": 8},
            {"created": (NOW + timedelta(seconds=30)).isoformat(), "running": 2}]
    lines = chart(rows, NOW, NOW + timedelta(seconds=60), width=4).splitlines()
    assert lines[0] == "waiting |██  | max 8"
    assert lines[1] == "running |  ▂▂| max 2"
    assert lines[2].strip().startswith("12:00:00") and lines[2].endswith("12:01:00 UTC")


def test_since_is_a_time_with_a_zone_or_a_duration() -> None:
    assert parse_since("10m", NOW) == NOW - timedelta(minutes=10)
    assert parse_since("1.5h", NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2026-01-01T10:00:00Z", NOW) == NOW - timedelta(hours=2)
    with pytest.raises(ValidationError, match="give a time zone"):
        parse_since("2026-01-01T10:00:00", NOW)
    with pytest.raises(ValidationError, match="not an ISO 8601 time or a duration"):
        parse_since("yesterday", NOW)


def test_event_lines_for_people() -> None:
    event = {"created": NOW.isoformat(), "channel": "queue", "name": "progress_job",
             "author": "ann", "data": {"number": 7, "name": "a.Job", "state": "running",
                                       "value": 0.25, "message": "a quarter"}}
    assert event_line(event) == ("2026-01-01 12:00:00  queue    progress_job       #7 a.Job "
                                 "running 25% a quarter  (ann)")
    message = {"created": NOW.isoformat(), "channel": "message", "name": "message",
               "data": {"text": "hello"}}
    assert event_line(message).endswith("message            hello")


def test_grant_and_revoke_keep_order_and_are_idempotent() -> None:
    assert changed(["a"], ["b", "a", "b"], True) == ["a", "b"]
    assert changed(["a", "b"], ["a", "c"], False) == ["b"]


def test_every_option_defaults_from_its_monq_variable(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    monkeypatch.setenv("MONQ_JOBS_LIMIT", "7")
    monkeypatch.setenv("MONQ_JOBS_STATE", "pending,running")
    monkeypatch.setenv("MONQ_JSON", "yes")
    monkeypatch.setenv("MONQ_SERVER", "http://example:5001")
    monkeypatch.setenv("MONQ_USERS_CREATE_EMAIL", "a@example.com")
    args = build_parser().parse_args(["jobs"])
    assert (args.limit, args.state, args.json, args.server) == (7, ["pending", "running"],
                                                                True, "http://example:5001")
    assert build_parser().parse_args(["jobs", "--limit", "3"]).limit == 3
    assert build_parser().parse_args(["jobs", "--server", "http://b"]).server == "http://b"
    assert build_parser().parse_args(["users", "create", "ann"]).email == "a@example.com"
    monkeypatch.setenv("MONQ_JSON", "0")
    assert build_parser().parse_args(["jobs"]).json is False
