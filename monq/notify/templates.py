"""Notification templates: checking them when a rule is made and rendering them when
it fires, in Jinja2's immutable sandbox.

Templates are written by users, so they must not reach Python internals: any
attribute or item whose name starts with ``_`` is refused when the template is
checked (`check_template`; the sandbox is `monq.core.sandbox`), and at render time
the sandbox raises instead of quietly rendering nothing. Output is plain text (no
HTML escaping), capped at `MAX_OUTPUT_CHARS`; repetition and powers are bounded so
that a template cannot exhaust memory.

Templates must not stall the process either (the notifier shares it with the
API and workers in ``monq up``): ``range`` yields at most `MAX_RANGE` items, loops
nest at most `MAX_LOOP_DEPTH` deep and their constant ranges multiply to at most
`MAX_ITERATIONS` (refused when the rule is made), and every render stops after
`MAX_RENDER_S` seconds of work whatever the template does (a trace on the
template's own frames). `render_async` renders in a thread, off the event loop.

The variables a template sees are those of `template_context`: ``transition``,
``description``, ``job_id``, ``number``, ``name``, ``state``, ``progress``,
``message``, ``cancelled``, ``worker``, ``error``, ``data`` (the transition's
data, e.g. what was given with progress), ``enqueued_by`` and ``args``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from types import FrameType
from typing import Any

import jinja2
import jinja2.nodes
from jinja2.exceptions import SecurityError, TemplateError

from monq.core.sandbox import (
    MAX_ITERATIONS,
    MAX_LOOP_DEPTH,
    MAX_OUTPUT_CHARS,
    MAX_RANGE,
    MAX_TEMPLATE_CHARS,
    TEMPLATE_FILE,
    check_template,
    environment,
)

__all__ = ["MAX_ITERATIONS", "MAX_LOOP_DEPTH", "MAX_RANGE", "MAX_TEMPLATE_CHARS",
           "RenderError", "check_template", "render", "render_async", "template_context"]

MAX_RENDER_S = 0.5


class RenderError(ValueError):
    """A template failed to render (a sandbox refusal, a type error, ...)."""


class RenderTimeout(SecurityError):
    """A template rendered for longer than `MAX_RENDER_S`."""


class _Deadline:
    """A trace on the frames of template code that raises once the time is up:
    loops, however nested, run through those frames."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def calls(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == TEMPLATE_FILE:
            self.check()
            return self.lines
        return None

    def lines(self, frame: FrameType, event: str, arg: Any) -> Any:
        self.check()
        return self.lines

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise RenderTimeout(f"rendering took longer than {MAX_RENDER_S} s")


@lru_cache(maxsize=512)
def _compiled(source: str) -> jinja2.Template:
    return environment().from_string(source)


def render(source: str, context: Mapping[str, Any], limit_s: float = MAX_RENDER_S) -> str:
    """The template rendered with `context`; `RenderError` if it fails, takes longer
    than `limit_s` or grows past `MAX_OUTPUT_CHARS`."""
    deadline = _Deadline(limit_s)
    previous = sys.gettrace()
    sys.settrace(deadline.calls)
    try:
        return _collect(_compiled(source).generate(dict(context)))
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
            AttributeError, OverflowError, RecursionError, MemoryError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.settrace(previous)


def _collect(parts: Iterator[str]) -> str:
    out: list[str] = []
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_OUTPUT_CHARS:  # stop now, not after building all of it
            raise RenderError(f"the rendered text is longer than {MAX_OUTPUT_CHARS} "
                              f"characters")
        out.append(part)
    return "".join(out)


async def render_async(source: str, context: Mapping[str, Any]) -> str:
    """`render` in a thread: the event loop keeps serving while a template renders."""
    return await asyncio.to_thread(render, source, context)


DESCRIPTIONS = {
    "enqueue_job": "was enqueued",
    "request_start_job": "was claimed by a worker",
    "release_job": "was given back unstarted",
    "start_job": "started",
    "progress_job": "reported progress",
    "complete_job": "completed",
    "defer_job": "was deferred",
    "failed_start": "could not be started",
    "failed_job": "failed",
    "inactivate_job": "became inactive",
    "request_kill_job": "is to be killed",
    "kill_job": "was killed",
    "request_remove_job": "is to be removed",
    "remove_job": "was removed",
    "hold_job": "was held",
    "resume_job": "was resumed",
    "flag_nonstop": "passed its wall time",
    "flag_zombie": "stopped sending heartbeats",
    "reset_job": "was reset after its worker died",
    "restart_waiting": "was restarted",
    "restart_stopped": "was restarted as a new job",
}


def template_context(event: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """The variables of a template, from the event that fired and the job's document."""
    data = event.get("data") or {}
    progress = job.get("progress") or {}
    locked = job.get("locked") or {}
    transition = str(event.get("name"))
    number = job.get("number", data.get("number"))
    name = job.get("name", data.get("name"))
    value = data.get("progress", progress.get("value"))
    return {
        "transition": transition,
        "description": f"job #{number} ({name}) {DESCRIPTIONS.get(transition, transition)}",
        "job_id": str(job.get("_id", data.get("_id"))),
        "number": number,
        "name": name,
        "state": data.get("state", job.get("state")),
        "progress": value,
        "message": data.get("message", progress.get("message")),
        "cancelled": bool(job.get("killed_at") or job.get("removed_at")),
        "worker": data.get("worker") or locked.get("worker"),
        "error": data.get("error") or job.get("last_error"),
        "data": dict(data.get("progress_data") or {}),
        "enqueued_by": (job.get("enqueued") or {}).get("by"),
        "args": dict(job.get("args") or {}),
    }
