"""What the CLI prints: JSON for scripts, tables for people, the progress bar of
``enqueue --wait`` and the terminal chart of ``history --chart``.

Everything here is a pure function of its input (rows, ``now``, a width) returning
text, so that it is tested without a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from monq.core.jsonio import dumps
from monq.core.times import as_utc

BLOCKS = " ▁▂▃▄▅▆▇█"
BAR_WIDTH = 30
CHART_WIDTH = 60
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def print_json(out: TextIO, data: Any, *, indent: int | None = 2) -> None:
    print(dumps(data, indent=indent), file=out, flush=True)


def parse_time(value: Any) -> datetime | None:
    """An ISO string (or datetime) as an aware datetime; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def short_time(value: Any) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (UTC) of an ISO time, or an empty string. Every time
    the CLI prints for people is in this form, in UTC."""
    when = parse_time(value)
    return "" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def cell(value: Any) -> str:
    """A value as every table and detail view shows it: nothing for None, yes/no,
    times as ``YYYY-MM-DD HH:MM:SS`` in UTC, lists comma-separated, objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_TIME.match(value)):
        try:
            return short_time(value)
        except ValueError:
            return str(value)
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return dumps(value)
    return str(value)


def details(record: Mapping[str, Any], width: int = 14) -> str:
    """``key: value`` lines of one record, values as `cell` shows them; an object's
    fields on lines of their own (``enqueued.at``)."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    width = max([width, *map(len, flat)])
    return "\n".join(f"{key:>{width}}: {cell(value)}".rstrip() for key, value in flat.items())


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Left-aligned columns with an upper-case header line."""
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def progress_line(job: Mapping[str, Any], *, width: int = BAR_WIDTH) -> str:
    """``[#####     ]  50% running  message`` for a job (as the API shows it)."""
    progress = job.get("progress") or {}
    value = min(1.0, max(0.0, float(progress.get("value") or 0)))
    bar = "#" * int(value * width)
    message = progress.get("message") or ""
    return f"[{bar:<{width}}] {value:4.0%} {job.get('state', ''):<9} {message}".rstrip()[:120]


def final_line(job: Mapping[str, Any]) -> str:
    """``job #3 error: RuntimeError: broken`` (the last line of the error)."""
    error = (job.get("last_error") or "").strip().splitlines()
    return f"job #{job.get('number')} {job.get('state')}" + (f": {error[-1]}" if error else "")


# The chart ----------------------------------------------------------------------
WAITING = ("pending", "deferred", "failed")


def buckets(rows: Iterable[Mapping[str, Any]], start: datetime, end: datetime, count: int
            ) -> list[dict[str, int]]:
    """`count` points from `start` to `end`: the most waiting and running jobs within
    each, a history row's counts lasting until the next row (rows oldest first)."""
    width = (end - start) / count
    points = [{"waiting": 0, "running": 0} for _ in range(count)]
    current: dict[str, int] | None = None
    ordered = sorted(((parse_time(r["created"]), r) for r in rows),
                     key=lambda pair: pair[0] or start)
    index = 0
    for i, point in enumerate(points):
        bucket_start, bucket_end = start + width * i, start + width * (i + 1)
        replaced_at_start = index < len(ordered) and (ordered[index][0] or start) <= bucket_start
        members = [current] if current and not replaced_at_start else []
        while index < len(ordered) and (ordered[index][0] or start) < bucket_end:
            row = ordered[index][1]
            current = {"waiting": sum(int(row.get(s) or 0) for s in WAITING),
                       "running": int(row.get("running") or 0)}
            members.append(current)
            index += 1
        for member in members:
            point["waiting"] = max(point["waiting"], member["waiting"])
            point["running"] = max(point["running"], member["running"])
    return points


def spark(values: Sequence[int], top: int) -> str:
    """One character per value, scaled so that `top` is a full block (0 is blank)."""
    if top <= 0:
        return " " * len(values)
    return "".join(BLOCKS[0] if v <= 0 else BLOCKS[max(1, round(v / top * 8))]
                   for v in values)


def chart(rows: Iterable[Mapping[str, Any]], start: datetime, end: datetime,
          width: int = CHART_WIDTH) -> str:
    """The waiting and running counts from `start` to `end` as two lines of blocks on
    one scale, with the maximum of each and the time axis."""
    points = buckets(rows, start, end, max(1, width))
    waiting = [p["waiting"] for p in points]
    running = [p["running"] for p in points]
    top = max([*waiting, *running, 0])
    axis_left, axis_right = start.strftime("%H:%M:%S"), end.strftime("%H:%M:%S")
    gap = max(1, width - len(axis_left) - len(axis_right))
    return "\n".join([
        f"waiting |{spark(waiting, top)}| max {max(waiting)}",
        f"running |{spark(running, top)}| max {max(running)}",
        f"         {axis_left}{' ' * gap}{axis_right} UTC",
    ])

