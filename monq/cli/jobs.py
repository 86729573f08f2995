"""``monq enqueue``, ``monq jobs``, ``monq job`` and the job actions
(``kill``, ``remove``, ``restart``, ``hold``, ``resume``)."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from datetime import datetime
from typing import Any

from monq.cli import EXIT_JOB_FAILED, Context
from monq.core.errors import Error, ValidationError
from monq.core.store.jobs import JobFilter
from monq.queue.enqueue import Origin
from monq.queue.queue import Queue
from monq.queue.states import FINAL, State

ACTIONS = ("kill", "remove", "restart", "hold", "resume")
WAIT_POLL_S = 0.2


def register(sub: Any) -> None:
    enqueue = sub.add_parser("enqueue", help="enqueue a job: monq enqueue NAME key=value ...")
    enqueue.add_argument("name", help="the job type's qualified name")
    enqueue.add_argument("values", nargs="*", metavar="key=value",
                         help="arguments; values parse as JSON when they can")
    enqueue.add_argument("--args", help="arguments as a JSON object")
    enqueue.add_argument("--priority", type=int)
    enqueue.add_argument("--at", help="not before this ISO 8601 time (with a time zone)")
    enqueue.add_argument("--hold", action="store_true", help="enqueue held back")
    enqueue.add_argument("--wait", action="store_true",
                         help="follow the job until it ends; exit 6 unless it completed")
    enqueue.add_argument("--json", action="store_true", help="print the job as JSON")
    enqueue.set_defaults(func=enqueue_command)

    jobs = sub.add_parser("jobs", help="list jobs")
    jobs.add_argument("--state", action="append", default=[], choices=[s.value for s in State])
    jobs.add_argument("--name", help="job name pattern (* and ? globs)")
    jobs.add_argument("--finished", action="store_true", help="finished jobs (the journal)")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=jobs_command)

    job = sub.add_parser("job", help="a job's details, events and log")
    job.add_argument("id", help="job id or number")
    job.add_argument("--json", action="store_true")
    job.set_defaults(func=job_command)

    for action in ACTIONS:
        parser = sub.add_parser(action, help=f"{action} jobs")
        parser.add_argument("ids", nargs="+", metavar="ID", help="job ids or numbers")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=action_command, action=action)


def parse_values(values: list[str], args_json: str | None) -> dict[str, Any]:
    """Arguments from ``--args`` and ``key=value`` pairs (values as JSON when they parse)."""
    args: dict[str, Any] = {}
    if args_json:
        try:
            args = json.loads(args_json)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"--args is not valid JSON: {exc.msg}", field="args") from None
        if not isinstance(args, dict):
            raise ValidationError("--args must be a JSON object", field="args")
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"expected key=value, got {item!r}", field=item)
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args


def parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"--at: not an ISO 8601 time: {text!r}", field="at") from None
    if value.tzinfo is None:
        raise ValidationError("--at: give a time zone, e.g. 2026-01-01T10:00:00+00:00",
                              field="at")
    return value


def _queue(ctx: Context, store: Any) -> Queue:
    user = getpass.getuser()
    return Queue(store, ctx.config, author=user, origin=Origin(by=user, origin="cli"))


def _print_json(ctx: Context, data: Any) -> None:
    print(json.dumps(data, indent=2, default=str), file=ctx.out)


def _table(ctx: Context, rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns), file=ctx.out)
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns), file=ctx.out)


async def enqueue_command(ctx: Context) -> int:
    a = ctx.args
    args = parse_values(a.values, a.args)
    options: dict[str, Any] = {}
    if a.priority is not None:
        options["priority"] = a.priority
    if a.at:
        options["at"] = parse_time(a.at)
    if a.hold:
        options["hold"] = True
    async with ctx.store() as store:
        queue = _queue(ctx, store)
        job = await queue.enqueue(a.name, args, **options)
        if a.json and not a.wait:
            _print_json(ctx, job.to_public())
        elif not a.wait:
            print(f"enqueued job #{job.number} {job.name} ({job.id})", file=ctx.out)
        if not a.wait:
            return 0
        print(f"enqueued job #{job.number} {job.name} ({job.id})", file=sys.stderr)
        final = await _follow(queue, job.id)
        if a.json:
            _print_json(ctx, final.to_public())
        else:
            error = (final.last_error or "").strip().splitlines()
            print(f"job #{final.number} {final.state}" + (f": {error[-1]}" if error else ""),
                  file=ctx.out)
        return 0 if final.state == State.COMPLETE else EXIT_JOB_FAILED


async def _follow(queue: Queue, job_id: Any) -> Any:
    """Poll the job until it ends, drawing a progress bar on stderr when it is a terminal."""
    tty = sys.stderr.isatty()
    while True:
        job = await queue.get(job_id)
        if tty:
            value = float(job.progress.get("value") or 0)
            bar = "#" * int(value * 30)
            print(f"\r[{bar:<30}] {value:4.0%} {job.state:<9} {job.progress.get('message') or ''}"
                  [:100], end="", file=sys.stderr, flush=True)
        if job.state in FINAL:
            if tty:
                print(file=sys.stderr)
            return job
        await asyncio.sleep(WAIT_POLL_S)


async def jobs_command(ctx: Context) -> int:
    a = ctx.args
    spec = JobFilter(states=tuple(a.state), name_glob=a.name)
    async with ctx.store() as store:
        jobs, total = await _queue(ctx, store).list_jobs(spec, finished=a.finished,
                                                         limit=max(1, a.limit))
    if a.json:
        _print_json(ctx, {"total_count": total, "jobs": [j.to_public() for j in jobs]})
        return 0
    _table(ctx, [{"number": j.number, "state": j.state.value, "name": j.name,
                  "priority": j.priority, "progress": f"{(j.progress.get('value') or 0):.0%}",
                  "worker": j.locked.worker if j.locked else "",
                  "enqueued": j.enqueued.get("at", "")} for j in jobs],
           ["number", "state", "name", "priority", "progress", "worker", "enqueued"])
    print(f"{len(jobs)} of {total} jobs", file=ctx.out)
    return 0


async def job_command(ctx: Context) -> int:
    async with ctx.store() as store:
        queue = _queue(ctx, store)
        job = await queue.get(ctx.args.id)
        events = await queue.events(job.id)
        lines, _ = await queue.read_log(job.id, limit=200)
    if ctx.args.json:
        _print_json(ctx, {"job": job.to_public(),
                          "events": [{"name": e["name"], "created": e["created"],
                                      "state": e["data"].get("state")} for e in events],
                          "log": [{"created": ln["created"], "level": ln["level"],
                                   "message": ln["message"]} for ln in lines]})
        return 0
    for key, value in job.to_public().items():
        print(f"{key:>14}: {value}", file=ctx.out)
    print("\nevents:", file=ctx.out)
    for event in events:
        print(f"  {event['created']:%Y-%m-%d %H:%M:%S}  {event['name']:<18} "
              f"{event['data'].get('state')}", file=ctx.out)
    print("\nlog:", file=ctx.out)
    for line in lines:
        print(f"  {line['created']:%H:%M:%S} {line['level']:<7} {line['message']}",
              file=ctx.out)
    return 0


async def action_command(ctx: Context) -> int:
    failures = 0
    results = []
    async with ctx.store() as store:
        queue = _queue(ctx, store)
        for job_id in ctx.args.ids:
            try:
                job = await getattr(queue, ctx.args.action)(job_id)
                results.append(job.to_public())
                if not ctx.args.json:
                    print(f"{ctx.args.action}: job #{job.number} is {job.state}"
                          + (" (held)" if job.held else ""), file=ctx.out)
            except Error as exc:
                failures += 1
                print(f"monq: error: {exc}", file=sys.stderr)
                last: Error = exc
    if ctx.args.json:
        _print_json(ctx, results)
    if failures:
        from monq.cli import error_code

        return error_code(last)
    return 0


