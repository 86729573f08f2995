"""``monq login`` and ``monq logout``: a token for ``--server`` mode, kept in the
user's config directory (``$XDG_CONFIG_HOME/monq/tokens.json``, mode 0600)."""

from __future__ import annotations

import argparse
from typing import Any

from monq.cli import Context
from monq.cli.accounts import read_password
from monq.cli.remote import load_token, login, logout, save_token
from monq.core.errors import ValidationError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "login", help="log in to a monq server and keep the token for --server")
    parser.add_argument("--server", default=argparse.SUPPRESS, metavar="URL",
                        help="the monq server, e.g. http://127.0.0.1:5001")
    parser.add_argument("--username", required=True, help="the user to log in as")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    parser.set_defaults(func=login_command)
    out = sub.add_parser("logout", help="revoke the stored token and forget it")
    out.add_argument("--server", default=argparse.SUPPRESS, metavar="URL",
                     help="the monq server")
    out.set_defaults(func=logout_command)


def _server(ctx: Context) -> str:
    server = getattr(ctx.args, "server", None)
    if not server:
        raise ValidationError("give --server URL (or set MONQ_SERVER)", field="server")
    return str(server)


async def login_command(ctx: Context) -> int:
    server = _server(ctx)
    password = read_password(ctx.args.password_stdin, confirm=False)
    token = await login(server, ctx.args.username, password)
    path = save_token(server, token)
    print(f"logged in to {server} as {ctx.args.username} (token in {path})", file=ctx.out)
    return 0


async def logout_command(ctx: Context) -> int:
    server = _server(ctx)
    token = load_token(server)
    if token:
        await logout(server, token)
        save_token(server, None)
    print(f"logged out of {server}", file=ctx.out)
    return 0
