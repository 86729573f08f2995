"""``monq scheduler``: the scheduler daemon, and ``monq schedules``: list, show, add,
update, enable, disable and remove cron schedules."""

from __future__ import annotations

import getpass
from typing import Any

from monq.cli import Context, Parser, add_action, run_daemon
from monq.cli.jobs import parse_values
from monq.cli.output import details, print_json, table
from monq.schedule.cron import CATCHUP_POLICIES, OVERLAP_POLICIES
from monq.schedule.service import ScheduleRecord, Schedules

COLUMNS = ("name", "job", "cron", "timezone", "enabled", "next_tick", "last_tick")


ID = "schedule id or name"


def register(sub: Any) -> None:
    sub.add_parser("scheduler", help="enqueue the jobs of due cron schedules"
                   ).set_defaults(func=scheduler_command)
    schedules = sub.add_parser("schedules", help="cron schedules: list, show, add, update, "
                               "enable, disable, remove")
    commands = schedules.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser,
                                        required=True)
    add_action(commands, "list", "every schedule", list_command)
    add_action(commands, "show", "one schedule, by id or name", show_command, id_help=ID)

    add = commands.add_parser("add", help="add a schedule: NAME JOB CRON [key=value ...]")
    add.add_argument("name", metavar="NAME", help="the schedule's name")
    add.add_argument("job", metavar="JOB", help="the job type's qualified name")
    add.add_argument("cron", metavar="CRON",
                     help="a cron expression, e.g. '*/5 * * * *' (quote it)")
    _definition_options(add)
    add.add_argument("--disabled", action="store_true", help="add it disabled")
    add.set_defaults(func=add_command)
    update = commands.add_parser("update", help="change a schedule (only what is given)")
    update.add_argument("id", metavar="ID", help=ID)
    update.add_argument("--cron")
    update.add_argument("--job")
    _definition_options(update)
    update.set_defaults(func=update_command)

    for action, text in (("enable", "enable a schedule (from its next tick after now)"),
                         ("disable", "disable a schedule"), ("remove", "remove a schedule")):
        add_action(commands, action, text,
                   toggle_command if action != "remove" else remove_command, id_help=ID,
                   enabled=action == "enable")


def _definition_options(parser: Any) -> None:
    parser.add_argument("values", nargs="*", default=[], metavar="key=value",
                        help="job arguments; values parse as JSON when they can")
    parser.add_argument("--args", help="job arguments as a JSON object")
    parser.add_argument("--timezone", help="IANA time zone of the expression (default UTC)")
    parser.add_argument("--jitter", type=float, metavar="SECONDS",
                        help="delay each tick by up to this many seconds")
    parser.add_argument("--catchup", choices=CATCHUP_POLICIES,
                        help="after downtime: none, the latest tick, or all (up to a cap)")
    parser.add_argument("--overlap", choices=OVERLAP_POLICIES,
                        help="when the previous job is still queued: skip or enqueue")
    parser.add_argument("--json", action="store_true")


def _spec(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    spec: dict[str, Any] = {}
    for key in ("cron", "job", "timezone", "catchup", "overlap"):
        if getattr(args, key, None) is not None:
            spec[key] = getattr(args, key)
    if args.jitter is not None:
        spec["jitter_s"] = args.jitter
    if args.values or args.args:
        spec["args"] = parse_values(args.values, args.args)
    return spec


def _schedules(store: Any) -> Schedules:
    return Schedules(store, author=getpass.getuser())


def _print(ctx: Context, record: ScheduleRecord, verb: str | None = None) -> None:
    if ctx.args.json:
        print_json(ctx.out, record.to_public())
    elif verb:
        # a disabled schedule has no next tick: enabling it sets one after now
        when = (f"enabled, next tick {record.next_tick:%Y-%m-%d %H:%M:%S} UTC" if record.enabled
                else "disabled, no next tick")
        print(f"schedule {record.name} {verb}: {record.cron} ({record.timezone}), {when}",
              file=ctx.out)
    else:
        print(details(_shown(record.to_public()), width=12), file=ctx.out)


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A schedule as people read it: a disabled one shows no next tick (it has none
    that will fire; enabling it sets one after now)."""
    return row if row.get("enabled") else {**row, "next_tick": None}


async def scheduler_command(ctx: Context) -> int:
    from monq.schedule.daemon import Scheduler

    return await run_daemon(ctx, "monq-scheduler", lambda store: [Scheduler(store, ctx.config)])


async def list_command(ctx: Context) -> int:
    async with ctx.store() as store:
        records = await _schedules(store).all()
    rows = [r.to_public() for r in records]
    if ctx.args.json:
        print_json(ctx.out, rows)
        return 0
    print(table([_shown(r) for r in rows], COLUMNS), file=ctx.out)
    print(f"{len(rows)} schedules", file=ctx.out)
    return 0


async def show_command(ctx: Context) -> int:
    async with ctx.store() as store:
        _print(ctx, await _schedules(store).get(ctx.args.id))
    return 0


async def add_command(ctx: Context) -> int:
    spec = {"name": ctx.args.name, "job": ctx.args.job, **_spec(ctx), "cron": ctx.args.cron,
            "enabled": not ctx.args.disabled}
    async with ctx.store() as store:
        _print(ctx, await _schedules(store).create(spec), "added")
    return 0


async def update_command(ctx: Context) -> int:
    async with ctx.store() as store:
        _print(ctx, await _schedules(store).update(ctx.args.id, None, _spec(ctx)), "changed")
    return 0


async def toggle_command(ctx: Context) -> int:
    async with ctx.store() as store:
        record = await _schedules(store).enable(ctx.args.id, ctx.args.enabled)
    _print(ctx, record, "enabled" if ctx.args.enabled else "disabled")
    return 0


async def remove_command(ctx: Context) -> int:
    async with ctx.store() as store:
        record = await _schedules(store).remove(ctx.args.id, None)
    if ctx.args.json:
        print_json(ctx.out, record.to_public())
    else:
        print(f"schedule {record.name} removed", file=ctx.out)
    return 0
