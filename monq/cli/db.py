"""``monq db``: database maintenance."""

from __future__ import annotations

import argparse
from typing import Any

from monq.core.store import mask_url


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("db", help="database maintenance")
    db_sub = parser.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    init = db_sub.add_parser("init", help="create every collection index (idempotent)")
    init.set_defaults(func=init_command)


async def init_command(ctx: Any) -> int:
    async with ctx.store() as store:
        created = await store.ensure_indexes()
    print(f"indexes ready on {mask_url(ctx.config.mongodb.url)} ({len(created)} checked)",
          file=ctx.out)
    return 0
