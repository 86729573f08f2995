"""``monq serve``: the API server (and dashboard) alone."""

from __future__ import annotations

import asyncio
from typing import Any

from monq.core.services import install_signal_handlers, run_services
from monq.core.store import Store


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the API server")
    parser.set_defaults(func=serve_command)


async def serve_command(ctx: Any) -> int:
    from monq.api.server import ApiServer

    stop = asyncio.Event()
    install_signal_handlers(stop)
    store = Store(ctx.config.mongodb.url, timeout_s=ctx.config.mongodb.connect_timeout_s,
                  app_name="monq-serve")
    try:
        await run_services([ApiServer(ctx.config, store)], stop)
    finally:
        await store.close()
    return 0
