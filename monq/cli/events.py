"""``monq events``: follow the live event stream (sys.event) until Ctrl-C, filtered by
channel, event name or job; ``--since`` starts in the past, ``--once`` prints what is
there and ends, ``--json`` prints one event per line."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from monq.cli import Context, add_remote_options
from monq.cli.backend import EVENT_BATCH, since_event_id
from monq.cli.live import pause, stop_on_signals
from monq.cli.output import short_time
from monq.core.errors import ValidationError
from monq.core.jsonio import dumps

POLL_S = 0.5
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
ONCE_SINCE = "10m"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(sub: Any) -> None:
    parser = sub.add_parser("events", help="follow the live event stream")
    parser.add_argument("--channel", action="append", default=None,
                        help="only this channel, e.g. queue or message (repeat for more)")
    parser.add_argument("--name", action="append", default=None,
                        help="only this event name, e.g. complete_job (repeat for more)")
    parser.add_argument("--job", metavar="ID", help="only the events of this job (id or number)")
    parser.add_argument("--since", metavar="TIME",
                        help="start at this ISO 8601 time or this long ago (30s, 10m, 2h, 1d); "
                             f"default: now, with --once {ONCE_SINCE}")
    parser.add_argument("--once", action="store_true",
                        help="print the events there are and stop instead of following")
    parser.add_argument("--interval", type=float, default=POLL_S, metavar="SECONDS",
                        help=f"seconds between polls (default {POLL_S:g})")
    parser.add_argument("--json", action="store_true", help="one JSON event per line")
    add_remote_options(parser)
    parser.set_defaults(func=events_command)


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: an ISO 8601 time with a time zone, or a duration before `now`."""
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"--since: not an ISO 8601 time or a duration like 10m: "
                              f"{text!r}", field="since") from None
    if value.tzinfo is None:
        raise ValidationError("--since: give a time zone, e.g. 2026-01-01T10:00:00+00:00",
                              field="since")
    return value.astimezone(UTC)


def event_line(event: dict[str, Any]) -> str:
    """One event for people: time, channel, name, then the job or the message."""
    data = event.get("data") or {}
    if "number" in data or "state" in data:
        what = f"#{data.get('number')} {data.get('name', '')} {data.get('state', '')}"
        # a progress event carries its value as a number in ``progress`` and the
        # message beside it (DESIGN.md section 4), not a nested document
        value = data.get("progress", data.get("value"))
        if isinstance(value, dict):
            value = value.get("value")
        if event["name"] == "progress_job" and isinstance(value, int | float):
            what += f" {float(value):.0%} {data.get('message') or ''}"
    elif event["name"] == "summary":
        counts = data.get("counts") or {}
        what = f"total {data.get('total', 0)}" + "".join(
            f", {state} {n}" for state, n in sorted(counts.items()) if n)
    else:
        what = str(data.get("text") or dumps(data))
    author = f"  ({event['author']})" if event.get("author") else ""
    return (f"{short_time(event['created'])}  {event.get('channel') or '':<8} "
            f"{event['name']:<18} {what.rstrip()}{author}")


async def events_command(ctx: Context) -> int:
    a = ctx.args
    if a.interval <= 0:
        raise ValidationError("--interval: must be more than 0 seconds", field="interval")
    now = datetime.now(UTC)
    # --once from now would print nothing by definition: look back a little instead
    since = parse_since(a.since or (ONCE_SINCE if a.once else "0s"), now)
    after: str | None = since_event_id(since)
    printed = 0
    stop = stop_on_signals()
    async with ctx.backend() as backend:
        job_id = (await backend.job(a.job))["_id"] if a.job else None
        # from now: an event id tells its second, no finer, so the events there are
        # of the current second are read past, not printed as new
        passing = not a.since and not a.once
        while not stop.is_set():
            batch = await backend.events(after, channels=a.channel, names=a.name,
                                         job_id=job_id)
            for event in batch:
                after = event["_id"]
                if passing:
                    continue
                print(dumps(event) if a.json else event_line(event), file=ctx.out,
                      flush=True)
                printed += 1
            if len(batch) >= EVENT_BATCH:
                continue  # more are waiting
            passing = False
            if a.once:
                if not printed:
                    hint = "" if a.since else " (--since 1h looks further back)"
                    print(f"monq: no events since {since:%Y-%m-%d %H:%M:%S} UTC{hint}",
                          file=sys.stderr)
                break
            await pause(stop, a.interval)
    return 0
