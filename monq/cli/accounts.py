"""``monq users ...`` and ``monq roles ...``: create, list, show, grant, revoke,
(de)activate, change passwords and remove, through the same operations and checks
as the API (`monq.core.auth.accounts`). Passwords come from a prompt or, with
``--password-stdin``, from the first line of standard input; never from arguments."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING, Any

from monq.cli import Context, add_remote_options
from monq.cli.output import details, print_json, table
from monq.core.auth.accounts import STANDARD_ROLE
from monq.core.errors import NotFound, ValidationError

if TYPE_CHECKING:
    from monq.cli.backend import Backend

USER_COLUMNS = ["name", "realname", "email", "active", "roles", "perms"]
ROLE_COLUMNS = ["name", "realname", "roles", "perms"]


def _add(sub: Any, name: str, help_text: str, *, record: bool = True, json: bool = False
         ) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    if record:
        parser.add_argument("name", metavar="NAME", help="the user's or role's name")
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON")
    add_remote_options(parser)
    return parser


def _grants(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("items", nargs="+", metavar="ROLE_OR_PERMISSION",
                        help=f"roles and permissions to {verb} (a permission has :// in it, "
                             "or is cop)")


def register(sub: Any) -> None:
    users = sub.add_parser("users", help="users: list, create, show, passwd, grant, ...")
    users_sub = users.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    _add(users_sub, "list", "list users", record=False, json=True).set_defaults(
        func=list_command, kind="user")
    create = _add(users_sub, "create", "create a user (the password is asked for)", json=True)
    create.add_argument("--email", required=True, help="the user's email address")
    create.add_argument("--realname", help="the user's full name")
    create.add_argument("--role", action="append", default=[],
                        help="a role to give (repeat for more; default standard_user if it exists)")
    create.add_argument("--perm", action="append", default=[],
                        help="a permission to give (repeat for more)")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    create.set_defaults(func=create_command, kind="user")
    _add(users_sub, "show", "one user", json=True).set_defaults(func=show_command, kind="user")
    passwd = _add(users_sub, "passwd", "set a user's password (revokes their tokens)")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    passwd.set_defaults(func=passwd_command, kind="user")
    for name, active in (("activate", True), ("deactivate", False)):
        _add(users_sub, name, f"{name} a user" + ("" if active else " (revokes their tokens)")
             ).set_defaults(func=activate_command, kind="user", active=active)
    _grants(_add(users_sub, "grant", "give a user roles or permissions"), "give")
    users_sub.choices["grant"].set_defaults(func=grant_command, kind="user", give=True)
    _grants(_add(users_sub, "revoke", "take roles or permissions from a user"), "take")
    users_sub.choices["revoke"].set_defaults(func=grant_command, kind="user", give=False)
    _add(users_sub, "remove", "delete a user").set_defaults(func=remove_command, kind="user")

    roles = sub.add_parser("roles", help="roles: list, create, show, grant, revoke, remove")
    roles_sub = roles.add_subparsers(dest="roles_command", metavar="COMMAND", required=True)
    _add(roles_sub, "list", "list roles", record=False, json=True).set_defaults(
        func=list_command, kind="role")
    role = _add(roles_sub, "create", "create a role", json=True)
    role.add_argument("--realname", help="a description")
    role.add_argument("--role", action="append", default=[],
                      help="a role this role includes (repeat for more)")
    role.add_argument("--perm", action="append", default=[],
                      help="a permission (repeat for more)")
    role.set_defaults(func=create_command, kind="role")
    _add(roles_sub, "show", "one role", json=True).set_defaults(func=show_command, kind="role")
    _grants(_add(roles_sub, "grant", "add permissions or included roles to a role"), "add")
    roles_sub.choices["grant"].set_defaults(func=grant_command, kind="role", give=True)
    _grants(_add(roles_sub, "revoke", "take permissions or roles from a role"), "take")
    roles_sub.choices["revoke"].set_defaults(func=grant_command, kind="role", give=False)
    _add(roles_sub, "remove", "delete a role (not while someone has it)").set_defaults(
        func=remove_command, kind="role")


def read_password(from_stdin: bool, *, confirm: bool = True) -> str:
    """A password: the first line of stdin, or asked at the terminal (a new one twice)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ValidationError("password: standard input was empty", field="password")
        return password
    if not sys.stdin.isatty():
        raise ValidationError("password: no terminal to ask at; use --password-stdin",
                              field="password")
    password = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != password:
        raise ValidationError("password: the two did not match", field="password")
    return password


def _row(record: dict[str, Any]) -> dict[str, Any]:
    return {"name": record["name"], "realname": record.get("realname"),
            "email": record.get("email"), "active": record.get("is_active", True),
            "roles": ",".join(record.get("role") or []),
            "perms": ",".join(record.get("perm") or [])}


async def list_command(ctx: Context) -> int:
    async with ctx.backend() as backend:
        records = await backend.records(ctx.args.kind)
    if ctx.args.json:
        print_json(ctx.out, records)
        return 0
    columns = USER_COLUMNS if ctx.args.kind == "user" else ROLE_COLUMNS
    print(table([_row(r) for r in records], columns), file=ctx.out)
    print(f"{len(records)} {ctx.args.kind}s", file=ctx.out)
    return 0


def _show(ctx: Context, record: dict[str, Any]) -> None:
    if getattr(ctx.args, "json", False):
        print_json(ctx.out, record)
        return
    keys = ("name", "kind", "realname", "email", "is_active", "role", "perm", "language",
            "created", "updated", "_id")
    print(details({key: record.get(key) for key in keys}, width=10), file=ctx.out)


async def show_command(ctx: Context) -> int:
    async with ctx.backend() as backend:
        _show(ctx, await backend.record(ctx.args.kind, ctx.args.name))
    return 0


async def create_command(ctx: Context) -> int:
    a = ctx.args
    fields: dict[str, Any] = {"name": a.name, "perm": a.perm}
    if a.realname:
        fields["realname"] = a.realname
    if a.kind == "user":
        fields.update(email=a.email, password=read_password(a.password_stdin))
    async with ctx.backend() as backend:
        fields["role"] = a.role or await _default_roles(backend, a.kind)
        record = await backend.create_record(fields)
    if a.json:
        print_json(ctx.out, record)
    else:
        print(f"created {a.kind} {record['name']}", file=ctx.out)
    return 0


async def _default_roles(backend: Backend, kind: str) -> list[str]:
    """A new user gets standard_user (login, profile, events) when it exists (a monq
    server creates it on its first start)."""
    if kind != "user":
        return []
    try:
        await backend.record("role", STANDARD_ROLE)
    except NotFound:
        return []
    return [STANDARD_ROLE]


async def passwd_command(ctx: Context) -> int:
    password = read_password(ctx.args.password_stdin)
    async with ctx.backend() as backend:
        record = await backend.record("user", ctx.args.name)
        await backend.update_record(record, {"password": password})
    print(f"password of {ctx.args.name} changed", file=ctx.out)
    return 0


async def activate_command(ctx: Context) -> int:
    async with ctx.backend() as backend:
        record = await backend.record("user", ctx.args.name)
        await backend.update_record(record, {"is_active": ctx.args.active})
    print(f"{ctx.args.name} is {'active' if ctx.args.active else 'inactive'}", file=ctx.out)
    return 0


def changed(current: list[str], items: list[str], give: bool) -> list[str]:
    """`current` with `items` added (in order, once) or taken away."""
    if give:
        return current + [i for i in dict.fromkeys(items) if i not in current]
    return [c for c in current if c not in items]


async def grant_command(ctx: Context) -> int:
    a = ctx.args
    perms = [i for i in a.items if "://" in i or i == "cop"]
    roles = [i for i in a.items if i not in perms]
    async with ctx.backend() as backend:
        record = await backend.record(a.kind, a.name)
        fields = {"perm": changed(record.get("perm") or [], perms, a.give),
                  "role": changed(record.get("role") or [], roles, a.give)}
        fields = {k: v for k, v in fields.items() if v != (record.get(k) or [])}
        if fields:
            record = await backend.update_record(record, fields)
    verb = ("granted" if a.give else "revoked") if fields else "unchanged"
    print(f"{a.kind} {a.name} {verb}: roles {', '.join(record.get('role') or []) or '-'}; "
          f"permissions {', '.join(record.get('perm') or []) or '-'}", file=ctx.out)
    return 0


async def remove_command(ctx: Context) -> int:
    async with ctx.backend() as backend:
        record = await backend.record(ctx.args.kind, ctx.args.name)
        await backend.delete_record(record)
    print(f"removed {ctx.args.kind} {ctx.args.name}", file=ctx.out)
    return 0
