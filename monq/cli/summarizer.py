"""``monq summarizer``: the queue's state into sys.history, once a second (one active
across the cluster), and ``monq history``: that history as a table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from monq.cli import Context, run_daemon
from monq.core.store.history import HistoryStore
from monq.queue.summary import WAITING_AND_RUNNING


def register(sub: Any) -> None:
    sub.add_parser("summarizer", help="write the queue's state to sys.history every second"
                   ).set_defaults(func=summarizer_command)
    history = sub.add_parser("history", help="the queue's history as a table")
    history.add_argument("--minutes", type=int, default=10, help="how far back (default 10)")
    history.add_argument("--resolution", choices=("second", "minute", "hour"),
                         default="second")
    history.add_argument("--json", action="store_true")
    history.set_defaults(func=history_command)


async def summarizer_command(ctx: Context) -> int:
    from monq.queue.summarizer import Summarizer

    return await run_daemon(ctx, "monq-summarizer",
                            lambda store: [Summarizer(store, ctx.config)])


async def history_command(ctx: Any) -> int:
    since = datetime.now(UTC) - timedelta(minutes=max(1, ctx.args.minutes))
    async with ctx.store() as store:
        docs, _ = await HistoryStore(store).between(ctx.args.resolution, since, None,
                                                    newest_first=False)
    if ctx.args.json:
        print(json.dumps([{k: v for k, v in d.items() if k != "_id"} for d in docs],
                         default=str, indent=2), file=ctx.out)
        return 0
    columns = ["created", *WAITING_AND_RUNNING, "total"]
    print("  ".join(f"{c:>8}" if c != "created" else f"{c:<19}" for c in columns),
          file=ctx.out)
    for doc in docs:
        print(f"{doc['created']:%Y-%m-%d %H:%M:%S}  "
              + "  ".join(f"{doc.get(c, 0):>8}" for c in columns[1:]), file=ctx.out)
    print(f"{len(docs)} rows", file=ctx.out)
    return 0
