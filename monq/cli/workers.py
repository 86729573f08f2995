"""``monq workers`` (the worker processes, alive or dead by the age of their
heartbeat) and ``monq maintenance on|off|status`` (pause claiming everywhere, or for
one job name)."""

from __future__ import annotations

from typing import Any

from monq.cli import Context, add_remote_options
from monq.cli.output import print_json, short_time, table

COLUMNS = ["id", "host", "pid", "pool", "status", "heartbeat", "jobs", "concurrency",
           "tags", "started"]


def register(sub: Any) -> None:
    workers = sub.add_parser("workers", help="worker processes: alive or dead, their jobs")
    workers.add_argument("--alive", action="store_true", help="only the live ones")
    workers.add_argument("--json", action="store_true", help="print JSON")
    add_remote_options(workers)
    workers.set_defaults(func=workers_command)

    maintenance = sub.add_parser(
        "maintenance", help="pause claiming new jobs (everywhere or for one job name)")
    maintenance.add_argument("switch", choices=("on", "off", "status"), metavar="on|off|status",
                             help="on: workers claim nothing new; off: back to normal")
    maintenance.add_argument("--name", help="only this job name (a qualified class name)")
    maintenance.add_argument("--json", action="store_true", help="print JSON")
    add_remote_options(maintenance)
    maintenance.set_defaults(func=maintenance_command)


def worker_rows(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": w["_id"], "host": w.get("host"), "pid": w.get("pid"),
             "pool": w.get("pool"), "status": "alive" if w.get("alive") else "dead",
             "heartbeat": f"{float(w.get('heartbeat_age_s') or 0):.1f}s ago",
             "jobs": ", ".join(f"#{j.get('number')}" for j in w.get("jobs") or []),
             "concurrency": w.get("concurrency"), "tags": ",".join(w.get("tags") or []),
             "started": short_time(w.get("started_at"))} for w in workers]


async def workers_command(ctx: Context) -> int:
    async with ctx.backend() as backend:
        workers = await backend.workers()
    if ctx.args.alive:
        workers = [w for w in workers if w.get("alive")]
    if ctx.args.json:
        print_json(ctx.out, workers)
        return 0
    print(table(worker_rows(workers), COLUMNS), file=ctx.out)
    alive = sum(1 for w in workers if w.get("alive"))
    print(f"{alive} alive, {len(workers) - alive} dead", file=ctx.out)
    return 0


async def maintenance_command(ctx: Context) -> int:
    a = ctx.args
    async with ctx.backend() as backend:
        if a.switch == "status":
            state = await backend.maintenance()
        else:
            state = await backend.set_maintenance(a.switch == "on", a.name)
    if a.json:
        print_json(ctx.out, state)
        return 0
    print(f"maintenance: {'on' if state['global'] else 'off'}", file=ctx.out)
    if state["names"]:
        print(f"paused job names: {', '.join(state['names'])}", file=ctx.out)
    return 0
