"""The scheduler's time maths as pure functions of `now`: ticks in a zone across
daylight-saving changes, catch-up plans, jitter."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monq.core.errors import ValidationError
from monq.schedule.cron import check_cron, check_zone, jitter_s, next_tick, plan, ticks_between

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def local(ticks: list[datetime], zone: ZoneInfo) -> list[str]:
    return [f"{t.astimezone(zone):%d %H:%M%z}" for t in ticks]


def day_of(zone: ZoneInfo, *date: int) -> tuple[datetime, datetime]:
    start = datetime(*date, tzinfo=zone).astimezone(UTC)
    return start, start + timedelta(hours=30)


def test_next_tick_is_strictly_after_and_in_utc() -> None:
    now = datetime(2026, 5, 4, 10, 5, tzinfo=UTC)
    assert next_tick("*/5 * * * *", ZoneInfo("UTC"), now) == now + timedelta(minutes=5)
    assert next_tick("0 9 * * *", BERLIN, now) == datetime(2026, 5, 5, 7, 0, tzinfo=UTC)
    assert next_tick("0 9 * * *", BERLIN, now).tzinfo is UTC


@pytest.mark.parametrize(("zone", "date", "expected"), [
    # spring forward 02:00 -> 03:00: the missing 02:30 fires at the jump, once
    (BERLIN, (2026, 3, 28, 23), ["29 03:00+0200", "30 02:30+0200"]),
    (NEW_YORK, (2026, 3, 8, 0), ["08 03:00-0400", "09 02:30-0400"]),
    # fall back: 02:30 (Berlin) / 01:30 (New York) happens twice, fires once
    (BERLIN, (2026, 10, 24, 23), ["25 02:30+0200", "26 02:30+0100"]),
    (NEW_YORK, (2026, 10, 31, 23), ["01 01:30-0400", "02 01:30-0500"]),
])
def test_daily_tick_in_the_changed_hour_fires_once(zone: ZoneInfo, date: tuple[int, ...],
                                                   expected: list[str]) -> None:
    hour = "1" if zone is NEW_YORK and date[1] == 10 else "2"
    start, end = day_of(zone, *date)
    assert local(ticks_between(f"30 {hour} * * *", zone, start, end), zone) == expected


def test_daily_tick_outside_the_change_keeps_its_wall_time() -> None:
    start, end = day_of(BERLIN, 2026, 3, 28, 0)
    ticks = ticks_between("0 9 * * *", BERLIN, start, end + timedelta(days=1))
    assert local(ticks, BERLIN) == ["28 09:00+0100", "29 09:00+0200"]
    assert [t.hour for t in ticks] == [8, 7]  # 24 wall hours apart are 23 real hours


@pytest.mark.parametrize(("zone", "date", "around"), [
    (BERLIN, (2026, 3, 29, 0), ["29 01:00+0100", "29 01:30+0100", "29 03:00+0200",
                                "29 03:30+0200"]),
    (NEW_YORK, (2026, 3, 8, 0), ["08 01:00-0500", "08 01:30-0500", "08 03:00-0400",
                                 "08 03:30-0400"]),
    (BERLIN, (2026, 10, 25, 0), ["25 02:00+0200", "25 02:30+0200", "25 02:00+0100",
                                 "25 02:30+0100", "25 03:00+0100"]),
    (NEW_YORK, (2026, 11, 1, 0), ["01 01:00-0400", "01 01:30-0400", "01 01:00-0500",
                                  "01 01:30-0500", "01 02:00-0500"]),
])
def test_every_half_hour_follows_real_time_across_changes(
        zone: ZoneInfo, date: tuple[int, ...], around: list[str]) -> None:
    start, end = day_of(zone, *date)
    ticks = ticks_between("*/30 * * * *", zone, start, end)
    gaps = {b - a for a, b in itertools.pairwise(ticks)}
    assert gaps == {timedelta(minutes=30)}  # no hole, no repeat, in real time
    shown = local(ticks, zone)
    first = shown.index(around[0])
    assert shown[first:first + len(around)] == around


def test_forward_and_backward_iteration_agree_across_changes() -> None:
    for zone, date in ((BERLIN, (2026, 3, 28, 20)), (BERLIN, (2026, 10, 24, 20)),
                       (NEW_YORK, (2026, 3, 7, 20)), (NEW_YORK, (2026, 10, 31, 20))):
        for expression in ("30 2 * * *", "15 1 * * *", "*/20 * * * *", "0 */2 * * *"):
            start, end = day_of(zone, *date)
            forward, t = [], start
            while (t := next_tick(expression, zone, t)) <= end:
                forward.append(t)
            assert forward == ticks_between(expression, zone, start, end), (zone, expression)


def test_ticks_between_keeps_the_latest_when_limited() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = ticks_between("* * * * *", ZoneInfo("UTC"), start, start + timedelta(hours=2),
                          limit=3)
    assert ticks == [start + timedelta(minutes=m) for m in (118, 119, 120)]


@pytest.mark.parametrize("expression", ["", "* * *", "61 * * * *", "* 25 * * *",
                                        "hello world", "* * * * * * * *", "0 0 31 2 *"])
def test_invalid_cron_expressions_are_refused_naming_the_field(expression: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_cron(expression)
    assert info.value.field == "cron"


def test_valid_cron_expression_is_normalised() -> None:
    assert check_cron("  */5   *  * * mon-fri ") == "*/5 * * * mon-fri"


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "Europe/Berlin/", "../etc/passwd"])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_zone(name)
    assert info.value.field == "timezone" and "time zone" in info.value.message


def test_jitter_is_within_bounds_fixed_per_tick_and_spread() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = [start + timedelta(minutes=i) for i in range(2000)]
    values = [jitter_s("sched-1", t, 30.0) for t in ticks]
    assert all(0 <= v < 30.0 for v in values)
    assert values == [jitter_s("sched-1", t, 30.0) for t in ticks]  # every scheduler agrees
    assert values != [jitter_s("sched-2", t, 30.0) for t in ticks]  # per schedule
    assert min(values) < 3 and max(values) > 27  # spread over the bound
    assert sum(values) / len(values) == pytest.approx(15, abs=1.5)
    assert jitter_s("sched-1", start, 0) == 0.0


MINUTE = "* * * * *"
UTCZ = ZoneInfo("UTC")
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_plan_of_an_on_time_tick_enqueues_it_whatever_the_policy() -> None:
    for policy in ("none", "latest", "all"):
        result = plan(MINUTE, UTCZ, T0, T0 + timedelta(seconds=1), catchup=policy, cap=10,
                      grace_s=60)
        assert result.ticks == (T0,) and result.next_tick == T0 + timedelta(minutes=1)


def test_plan_before_the_tick_does_nothing() -> None:
    result = plan(MINUTE, UTCZ, T0, T0 - timedelta(seconds=1), catchup="all", cap=10,
                  grace_s=60)
    assert result.ticks == () and result.next_tick == T0


def test_catch_up_policies_after_downtime() -> None:
    now = T0 + timedelta(minutes=30, seconds=5)  # down for half an hour: 31 ticks due
    none = plan(MINUTE, UTCZ, T0, now, catchup="none", cap=10, grace_s=60)
    latest = plan(MINUTE, UTCZ, T0, now, catchup="latest", cap=10, grace_s=60)
    every = plan(MINUTE, UTCZ, T0, now, catchup="all", cap=100, grace_s=60)
    capped = plan(MINUTE, UTCZ, T0, now, catchup="all", cap=10, grace_s=60)
    assert none.ticks == (T0 + timedelta(minutes=30),)  # the latest is on time
    assert latest.ticks == (T0 + timedelta(minutes=30),)
    assert every.ticks == tuple(T0 + timedelta(minutes=m) for m in range(31))
    assert capped.ticks == tuple(T0 + timedelta(minutes=m) for m in range(21, 31))
    assert {p.next_tick for p in (none, latest, every, capped)} == {
        T0 + timedelta(minutes=31)}


def test_catch_up_none_drops_a_late_latest_tick() -> None:
    hourly = "0 * * * *"
    now = T0 + timedelta(hours=5, minutes=30)  # the latest tick is 30 minutes old
    assert plan(hourly, UTCZ, T0, now, catchup="none", cap=10, grace_s=60).ticks == ()
    assert plan(hourly, UTCZ, T0, now, catchup="latest", cap=10, grace_s=60).ticks == (
        T0 + timedelta(hours=5),)
    assert len(plan(hourly, UTCZ, T0, now, catchup="all", cap=10, grace_s=60).ticks) == 6
    assert plan(hourly, UTCZ, T0, now, catchup="none", cap=10, grace_s=3600).ticks == (
        T0 + timedelta(hours=5),)


def test_catch_up_none_counts_the_jitter_in_the_grace() -> None:
    bound = 50.0
    delay = jitter_s("s", T0, bound)
    fired = T0 + timedelta(seconds=delay)
    on_time = plan("0 * * * *", UTCZ, T0, fired + timedelta(seconds=59), catchup="none",
                   cap=1, grace_s=60, jitter_bound_s=bound, schedule_id="s")
    assert on_time.ticks == (T0,)


def test_plan_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="catch-up"):
        plan(MINUTE, UTCZ, T0, T0, catchup="sometimes", cap=1, grace_s=1)
