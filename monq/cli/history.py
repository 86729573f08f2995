"""``monq history``: the queue's history (sys.history, written by the summarizer) as a
table, as JSON, or as a small chart of the waiting and running counts."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

from monq.cli import Context, add_remote_options
from monq.cli.output import CHART_WIDTH, chart, print_json, short_time, table
from monq.core.errors import ValidationError
from monq.history.summary import WAITING_AND_RUNNING

COLUMNS = ["created", *WAITING_AND_RUNNING, "total"]


def register(sub: Any) -> None:
    history = sub.add_parser("history", help="the queue's history: a table or a chart")
    history.add_argument("--minutes", type=int, default=10, help="how far back (default 10)")
    history.add_argument("--resolution", choices=("second", "minute", "hour"),
                         default="second", help="which history (default second)")
    history.add_argument("--chart", action="store_true",
                         help="a chart of the waiting and running counts instead of a table")
    history.add_argument("--width", type=int, default=None,
                         help="columns of the chart (default: the terminal's width)")
    history.add_argument("--json", action="store_true", help="print JSON")
    add_remote_options(history)
    history.set_defaults(func=history_command)


def chart_width(requested: int | None) -> int:
    if requested is not None:
        if requested < 10:
            raise ValidationError("--width: at least 10 columns", field="width")
        return requested
    columns = shutil.get_terminal_size((CHART_WIDTH + 25, 24)).columns
    return max(10, min(CHART_WIDTH * 2, columns - 25))


async def history_command(ctx: Context) -> int:
    a = ctx.args
    if a.minutes < 1:
        raise ValidationError("--minutes: at least 1", field="minutes")
    width = chart_width(a.width) if a.chart else 0
    end = datetime.now(UTC)
    start = end - timedelta(minutes=a.minutes)
    async with ctx.backend() as backend:
        rows = await backend.history(a.resolution, start)
    if a.json:
        print_json(ctx.out, rows)
    elif a.chart:
        print(chart(rows, start, end, width), file=ctx.out)
    else:
        print(table([{**{c: r.get(c, 0) for c in COLUMNS},
                      "created": short_time(r["created"])} for r in rows], COLUMNS),
              file=ctx.out)
        print(f"{len(rows)} rows", file=ctx.out)
    return 0
