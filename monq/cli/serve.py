"""``monq serve``: the API server alone."""

from __future__ import annotations

from typing import Any

from monq.cli import Context, run_daemon


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the API server")
    parser.set_defaults(func=serve_command)


async def serve_command(ctx: Context) -> int:
    from monq.api.server import ApiServer

    return await run_daemon(ctx, "monq-serve", lambda store: [ApiServer(ctx.config, store)])
