"""``monq summarizer``: the queue's state into sys.history, once a second (one active
across the cluster). ``monq history`` is in `monq.cli.history`."""

from __future__ import annotations

from typing import Any

from monq.cli import Context, run_daemon


def register(sub: Any) -> None:
    sub.add_parser("summarizer", help="write the queue's state to sys.history every second"
                   ).set_defaults(func=summarizer_command)


async def summarizer_command(ctx: Context) -> int:
    from monq.history.daemon import Summarizer

    return await run_daemon(ctx, "monq-summarizer",
                            lambda store: [Summarizer(store, ctx.config)])
