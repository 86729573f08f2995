"""Schedule time maths: pure functions of ``now``, no clock and no database.

A schedule names a cron expression (five fields, or six with croniter's trailing
seconds field) and a time zone; its *ticks* are the instants (UTC) at which the
expression matches the zone's wall clock. Around daylight-saving changes:

- spring forward: a wall time that does not exist (02:30 in Berlin on the last
  Sunday of March) fires once, at the moment the clock jumps (03:00 CEST);
- fall back: the repeated hour is run through once more for expressions whose
  hour field is ``*`` (``*/15 * * * *`` keeps firing every 15 real minutes), while
  a tick at a fixed hour (``30 2 * * *``) fires only in the first pass.

`plan` decides which ticks a scheduler enqueues when it finds a schedule due,
under the schedule's catch-up policy, and where the schedule's next tick is.
`jitter_s` is a tick's delay, fixed per (schedule, tick) by a hash so that every
scheduler computes the same value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from monq.core.errors import ValidationError

CATCHUP_POLICIES = ("none", "latest", "all")
OVERLAP_POLICIES = ("skip", "enqueue")
MAX_JITTER_S = 86400.0
# croniter gives up on an expression that matches nothing within this many years
_SEARCH_YEARS = 50


def check_cron(expression: str) -> str:
    """The expression, stripped, if croniter accepts it; else a `ValidationError`."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValidationError("cron: expected a cron expression such as '*/5 * * * *'",
                              field="cron")
    text = " ".join(expression.split())
    if len(text.split()) not in (5, 6) or not croniter.is_valid(text):
        raise ValidationError(f"cron: invalid cron expression {expression!r} (expected five "
                              f"fields: minute hour day month weekday, and optionally a "
                              f"sixth: second)", field="cron")
    try:
        next_tick(text, ZoneInfo("UTC"), datetime(2000, 1, 1, tzinfo=UTC))
    except (ValueError, KeyError, OverflowError):
        raise ValidationError(f"cron: the expression {expression!r} never matches",
                              field="cron") from None
    return text


def check_zone(name: str) -> ZoneInfo:
    """The time zone of an IANA name such as ``Europe/Berlin``; else a `ValidationError`."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("timezone: expected an IANA time zone such as 'Europe/Berlin'",
                              field="timezone")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"timezone: unknown time zone {name!r} (expected an IANA name "
                              f"such as 'Europe/Berlin' or 'UTC')", field="timezone") from None


def _hour_is_wildcard(expression: str) -> bool:
    return expression.split()[1] == "*"


def _second_pass(tick: datetime, zone: ZoneInfo) -> bool:
    """Whether `tick` falls in the repeated hour after a fall-back change."""
    local = tick.astimezone(zone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _ticks(expression: str, zone: ZoneInfo, start: datetime, forward: bool = True
           ) -> Iterator[datetime]:
    """Ticks strictly after (or before) `start`, in UTC, nearest first."""
    wildcard_hour = _hour_is_wildcard(expression)
    it = croniter(expression, start.astimezone(zone))
    step = it.get_next if forward else it.get_prev
    previous = start
    while True:
        tick = step(datetime).astimezone(UTC)
        if (tick <= previous) if forward else (tick >= previous):
            continue  # croniter may repeat an instant around a change; keep it monotonic
        previous = tick
        if not wildcard_hour and _second_pass(tick, zone):
            continue
        yield tick


def next_tick(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first tick strictly after `after`."""
    return next(_ticks(expression, zone, after))


def ticks_between(expression: str, zone: ZoneInfo, after: datetime, until: datetime,
                  limit: int = 1000) -> list[datetime]:
    """The ticks t with ``after < t <= until``, oldest first, at most `limit` (the
    latest ones when there are more)."""
    out: list[datetime] = []
    for tick in _ticks(expression, zone, until + timedelta(microseconds=1), forward=False):
        if tick <= after or len(out) >= limit:
            break
        out.append(tick)
    return out[::-1]


def jitter_s(schedule_id: str, tick: datetime, bound_s: float) -> float:
    """The delay of one tick: in ``[0, bound_s)``, the same for every scheduler."""
    if bound_s <= 0:
        return 0.0
    digest = hashlib.sha256(f"{schedule_id}|{tick.astimezone(UTC).isoformat()}".encode())
    fraction = int.from_bytes(digest.digest()[:8], "big") / 2**64
    return round(fraction * bound_s, 3)


@dataclass(frozen=True)
class Plan:
    """What a scheduler does with a due schedule: enqueue `ticks` (oldest first), then
    wait for `next_tick`."""

    ticks: tuple[datetime, ...]
    next_tick: datetime


def plan(expression: str, zone: ZoneInfo, due_tick: datetime, now: datetime, *,
         catchup: str, cap: int, grace_s: float, jitter_bound_s: float = 0.0,
         schedule_id: str = "") -> Plan:
    """The ticks to enqueue when the schedule's next tick, `due_tick`, has come.

    The candidates are the ticks from `due_tick` up to `now`. The latest one is on
    time when it fired (tick plus its jitter) at most `grace_s` before `now`;
    otherwise, and for every earlier candidate, the tick was missed (the schedulers
    were down). Catch-up policies: ``none`` enqueues only an on-time latest tick,
    ``latest`` the latest tick whatever its age, ``all`` every candidate, at most
    the `cap` latest.
    """
    if catchup not in CATCHUP_POLICIES:
        raise ValueError(f"unknown catch-up policy {catchup!r}")
    if due_tick > now:
        return Plan((), due_tick)
    following = next_tick(expression, zone, now)
    limit = max(1, cap) if catchup == "all" else 1
    candidates = ticks_between(expression, zone, due_tick - timedelta(microseconds=1), now,
                               limit=limit)
    if not candidates:  # due_tick is not a tick of this expression
        return Plan((), following)
    latest = candidates[-1]
    fired = latest + timedelta(seconds=jitter_s(schedule_id, latest, jitter_bound_s))
    if catchup == "none" and (now - fired).total_seconds() > grace_s:
        return Plan((), following)
    return Plan(tuple(candidates), following)
