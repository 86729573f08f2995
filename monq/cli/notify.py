"""``monq notifier`` (the daemon deriving and sending notifications) and ``monq notify
list|show|resend``: the deliveries, their state and errors, and resending one."""

from __future__ import annotations

from typing import Any

from monq.cli import Context, add_action, run_daemon
from monq.cli.output import details, print_json, table
from monq.notify.deliveries import STATES, Delivery, Notifications, check_delivery_id
from monq.queue.reads import JobReads


def register(sub: Any) -> None:
    sub.add_parser("notifier", help="derive notification deliveries from job events and "
                   "send them (email, webhook, log, websocket)"
                   ).set_defaults(func=notifier_command)
    notify = sub.add_parser("notify", help="notification deliveries: list, show, resend")
    actions = notify.add_subparsers(dest="notify_command", metavar="ACTION",
                                    parser_class=type(notify), required=True)
    listing = add_action(actions, "list", "deliveries, newest first", list_command)
    listing.add_argument("--state", action="append", default=[], choices=STATES)
    listing.add_argument("--job", help="only this job's (id or number)")
    listing.add_argument("--limit", type=int, default=50)
    add_action(actions, "show", "one delivery: what was sent, attempts, error", show_command,
               id_help="the delivery id")
    add_action(actions, "resend", "send a delivery again now", resend_command,
               id_help="the delivery id")


async def notifier_command(ctx: Context) -> int:
    from monq.notify.daemon import Notifier

    return await run_daemon(ctx, "monq-notifier", lambda store: [Notifier(store, ctx.config)])


def _print_json(ctx: Context, data: Any) -> None:
    print_json(ctx.out, data)


async def list_command(ctx: Context) -> int:
    a = ctx.args
    async with ctx.store() as store:
        job_id = (await JobReads(store).get(a.job)).id if a.job else None
        deliveries, total = await Notifications(store).page(
            states=tuple(a.state), job_id=job_id, limit=max(1, a.limit))
    if a.json:
        _print_json(ctx, {"total_count": total,
                          "notifications": [d.to_public() for d in deliveries]})
        return 0
    columns = ("id", "job", "transition", "type", "state", "attempts", "error")
    rows = [{"id": d.id, "job": f"#{d.number}", "transition": d.transition, "type": d.type,
             "state": d.state, "attempts": f"{d.attempts}/{d.max_attempts}",
             "error": (d.last_error or "")[:60]} for d in deliveries]
    print(table(rows, columns), file=ctx.out)
    print(f"{len(rows)} of {total} notifications", file=ctx.out)
    return 0


def _show(ctx: Context, delivery: Delivery) -> None:
    if ctx.args.json:
        _print_json(ctx, delivery.to_public())
        return
    shown = {k: v for k, v in delivery.to_public().items() if k not in ("payload", "rule")}
    print(details({**shown, "payload": delivery.payload}, width=13), file=ctx.out)


async def show_command(ctx: Context) -> int:
    check_delivery_id(ctx.args.id)
    async with ctx.store() as store:
        _show(ctx, await Notifications(store).get(ctx.args.id))
    return 0


async def resend_command(ctx: Context) -> int:
    check_delivery_id(ctx.args.id)
    async with ctx.store() as store:
        delivery = await Notifications(store).resend(ctx.args.id)
    if ctx.args.json:
        _print_json(ctx, delivery.to_public())
    else:
        print(f"notification {delivery.id} ({delivery.type} for job #{delivery.number}) "
              f"will be sent again", file=ctx.out)
    return 0
