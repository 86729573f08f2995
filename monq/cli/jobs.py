"""``monq enqueue``, ``monq jobs``, ``monq job`` and the job actions
(``kill``, ``remove``, ``restart``, ``hold``, ``resume``)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from monq.cli import EXIT_JOB_FAILED, Context, add_remote_options, error_code
from monq.cli.live import redraw
from monq.cli.output import details, final_line, print_json, progress_line, short_time, table
from monq.core.errors import Error, ValidationError
from monq.core.jsonio import dumps
from monq.queue.states import FINAL, State

if TYPE_CHECKING:
    from monq.cli.backend import Backend

ACTIONS = ("kill", "remove", "restart", "hold", "resume")
WAIT_POLL_S = 0.2
WATCH_INTERVAL_S = 2.0
FINAL_STATES = frozenset(s.value for s in FINAL)


def register(sub: Any) -> None:
    enqueue = sub.add_parser("enqueue", help="enqueue a job: monq enqueue NAME key=value ...")
    enqueue.add_argument("name", metavar="JOB", help="the job type's qualified name")
    enqueue.add_argument("values", nargs="*", default=[], metavar="key=value",
                         help="arguments; values parse as JSON when they can")
    enqueue.add_argument("--args", help="arguments as a JSON object")
    enqueue.add_argument("--priority", type=int, help="higher runs first")
    enqueue.add_argument("--at", help="not before this ISO 8601 time (with a time zone)")
    enqueue.add_argument("--hold", action="store_true", help="enqueue held back")
    enqueue.add_argument("--wait", action="store_true",
                         help="follow the job until it ends; exit 6 unless it completed")
    enqueue.add_argument("--json", action="store_true", help="print the job as JSON")
    add_remote_options(enqueue)
    enqueue.set_defaults(func=enqueue_command)

    jobs = sub.add_parser("jobs", help="list jobs")
    jobs.add_argument("--state", action="append", default=[], choices=[s.value for s in State],
                      help="only jobs in this state (repeat for more)")
    jobs.add_argument("--name", help="job name pattern (* and ? globs)")
    jobs.add_argument("--finished", action="store_true", help="finished jobs (the journal)")
    jobs.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.add_argument("--watch", action="store_true",
                      help="a live table, redrawn every --interval until Ctrl-C")
    jobs.add_argument("--interval", type=float, default=WATCH_INTERVAL_S, metavar="SECONDS",
                      help=f"seconds between redraws of --watch (default {WATCH_INTERVAL_S:g})")
    add_remote_options(jobs)
    jobs.set_defaults(func=jobs_command)

    job = sub.add_parser("job", help="a job's details, events and log")
    job.add_argument("id", metavar="ID", help="job id or number")
    job.add_argument("--log-lines", type=int, default=200, help="log lines shown (default 200)")
    job.add_argument("--json", action="store_true", help="print JSON")
    add_remote_options(job)
    job.set_defaults(func=job_command)

    for action in ACTIONS:
        parser = sub.add_parser(action, help=f"{action} jobs")
        parser.add_argument("ids", nargs="+", metavar="ID", help="job ids or numbers")
        parser.add_argument("--json", action="store_true", help="print the jobs as JSON")
        add_remote_options(parser)
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


def _print_json(ctx: Context, data: Any) -> None:
    print_json(ctx.out, data)


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
    async with ctx.backend() as backend:
        job = await backend.enqueue(a.name, args, options)
        said = f"enqueued job #{job['number']} {job['name']} ({job['_id']})"
        if not a.wait:
            if a.json:
                _print_json(ctx, job)
            else:
                print(said, file=ctx.out)
            return 0
        print(said, file=sys.stderr, flush=True)
        final = await follow(backend, job["_id"], sys.stderr)
    if a.json:
        _print_json(ctx, final)
    else:
        print(final_line(final), file=ctx.out)
    return 0 if final["state"] == State.COMPLETE.value else EXIT_JOB_FAILED


async def follow(backend: Backend, job_id: str, err: TextIO,
                 poll_s: float = WAIT_POLL_S) -> dict[str, Any]:
    """Poll the job until it ends: a progress bar redrawn on `err` when it is a
    terminal, else a plain line whenever its state or progress changes."""
    tty = err.isatty()
    shown = ""
    while True:
        job = await backend.job(job_id)
        line = progress_line(job)
        if tty:
            print("\r" + line.ljust(len(shown)), end="", file=err, flush=True)
        elif line != shown:
            print(line, file=err, flush=True)
        shown = line
        if job["state"] in FINAL_STATES:
            if tty:
                print(file=err)
            return job
        await asyncio.sleep(poll_s)


def _job_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"number": j["number"], "state": j["state"] + (" (held)" if j.get("held") else ""),
             "name": j["name"], "priority": j["priority"],
             "progress": f"{float((j.get('progress') or {}).get('value') or 0):.0%}",
             "worker": (j.get("locked") or {}).get("worker") or "",
             "enqueued": short_time((j.get("enqueued") or {}).get("at"))} for j in jobs]


JOB_COLUMNS = ["number", "state", "name", "priority", "progress", "worker", "enqueued"]


async def jobs_command(ctx: Context) -> int:
    a = ctx.args
    if a.interval <= 0:
        raise ValidationError("--interval: must be more than 0 seconds", field="interval")
    async with ctx.backend() as backend:
        async def listing() -> tuple[list[dict[str, Any]], int]:
            return await backend.jobs(states=a.state, name=a.name, finished=a.finished,
                                      limit=max(1, a.limit))

        async def frame() -> str:
            jobs, total = await listing()
            if a.json:
                return dumps({"total_count": total, "jobs": jobs})
            return (f"monq jobs  {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC  "
                    f"(every {a.interval:g}s, Ctrl-C to stop)\n"
                    + table(_job_rows(jobs), JOB_COLUMNS) + f"\n{len(jobs)} of {total} jobs")

        if a.watch:
            return await redraw(ctx.out, frame, a.interval)
        jobs, total = await listing()
    if a.json:
        _print_json(ctx, {"total_count": total, "jobs": jobs})
        return 0
    print(table(_job_rows(jobs), JOB_COLUMNS), file=ctx.out)
    print(f"{len(jobs)} of {total} jobs", file=ctx.out)
    return 0


async def job_command(ctx: Context) -> int:
    async with ctx.backend() as backend:
        job = await backend.job(ctx.args.id)
        events = await backend.job_events(job["_id"])
        lines = await backend.job_log(job["_id"], ctx.args.log_lines)
    if ctx.args.json:
        _print_json(ctx, {"job": job, "events": events, "log": lines})
        return 0
    print(details(job), file=ctx.out)
    print("\nevents:", file=ctx.out)
    for event in events:
        print(f"  {short_time(event['created'])}  {event['name']:<18} "
              f"{(event.get('data') or {}).get('state') or ''}", file=ctx.out)
    print("\nlog:", file=ctx.out)
    for line in lines:
        print(f"  {short_time(line['created'])} {line['level']:<7} {line['message']}",
              file=ctx.out)
    return 0


def _replaces(action: str, job: dict[str, Any]) -> bool:
    """Whether `job` is the new job a restart made (of a stopped one)."""
    enqueued = job.get("enqueued") or {}
    return action == "restart" and enqueued.get("origin") == "restart" \
        and bool(enqueued.get("parent_id"))


def action_line(action: str, job: dict[str, Any], parent: dict[str, Any] | None = None
                ) -> str:
    """What an action did, in words: done, or requested of the job's worker; a
    restart of a stopped job names the job that replaces it."""
    number, state = job["number"], job["state"]
    held = ", held" if job.get("held") and state in ("pending", "deferred", "failed") else ""
    if parent is not None:
        return f"restarted job #{parent['number']}: job #{number} replaces it ({state})"
    if action in ("kill", "remove") and state == "running":
        noun = "kill" if action == "kill" else "removal"
        return (f"{noun} of job #{number} requested: it is running, its worker stops it "
                f"(watch: monq job {number})")
    done = {"kill": "killed", "remove": "removed", "restart": "restarted", "hold": "held",
            "resume": "resumed"}[action]
    return f"{done} job #{number} ({state}{held})"


async def action_command(ctx: Context) -> int:
    results = []
    last: Error | None = None
    async with ctx.backend() as backend:
        for job_id in ctx.args.ids:
            try:
                job = await backend.act(ctx.args.action, job_id)
            except Error as exc:
                print(f"monq: error: {exc}", file=sys.stderr)
                last = exc
                continue
            results.append(job)
            if not ctx.args.json:
                parent = None
                if _replaces(ctx.args.action, job):
                    parent = await backend.job(job["enqueued"]["parent_id"])
                print(action_line(ctx.args.action, job, parent), file=ctx.out)
    if ctx.args.json:
        _print_json(ctx, results)
    return 0 if last is None else error_code(last)
