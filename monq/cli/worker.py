"""``monq worker``: run jobs on this machine."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from monq.cli import env_default
from monq.core.services import install_signal_handlers, run_services
from monq.core.store import Store


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


async def worker_command(ctx: Any) -> int:
    from monq.worker.daemon import Worker

    args = ctx.args
    tags = None if args.tags is None else [t.strip() for t in str(args.tags).split(",")
                                           if t.strip()]
    concurrency = int(args.concurrency) if args.concurrency else None
    stop = asyncio.Event()
    install_signal_handlers(stop)
    store = Store(ctx.config.mongodb.url, timeout_s=ctx.config.mongodb.connect_timeout_s,
                  app_name="monq-worker")
    try:
        worker = Worker(store, ctx.config, concurrency=concurrency, pool=args.pool, tags=tags)
        await store.ensure_indexes() if await _reachable(store) else None
        await run_services([worker], stop)
    finally:
        await store.close()
    return 0


async def _reachable(store: Store) -> bool:
    from monq.core.errors import DatabaseUnavailable

    try:
        await store.ping()
        return True
    except DatabaseUnavailable:
        return False
