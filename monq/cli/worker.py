"""``monq worker``: run jobs on this machine."""

from __future__ import annotations

import argparse
from typing import Any

from monq.cli import Context, env_default, run_daemon


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker", help="run jobs (claim, execute in processes, heartbeat)")
    parser.add_argument("--concurrency", type=int, default=env_default("worker_concurrency"),
                        help="job slots (default: worker.concurrency)")
    parser.add_argument("--pool", default=env_default("worker_pool"),
                        help="the pool to serve (default: worker.pool)")
    parser.add_argument("--tags", default=env_default("worker_tags"),
                        help="comma-separated tags this worker offers (default: worker.tags)")
    parser.set_defaults(func=worker_command)


async def worker_command(ctx: Context) -> int:
    from monq.worker.daemon import Worker

    args = ctx.args
    tags = None if args.tags is None else [t.strip() for t in str(args.tags).split(",")
                                           if t.strip()]
    concurrency = int(args.concurrency) if args.concurrency else None
    return await run_daemon(ctx, "monq-worker", lambda store: [Worker(
        store, ctx.config, concurrency=concurrency, pool=args.pool, tags=tags)])
