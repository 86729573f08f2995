"""Notification templates: checking them when a rule is made and rendering them when
it fires, in Jinja2's immutable sandbox.

Templates are written by users, so they must not reach Python internals: any
attribute or item whose name starts with ``_`` is refused when the template is
checked (`check_template`), and at render time the sandbox raises instead of
quietly rendering nothing. Output is plain text (no HTML escaping), capped at
`MAX_OUTPUT_CHARS`; repetition and powers are bounded so that a template cannot
exhaust memory.

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
import operator
import sys
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from types import FrameType
from typing import Any

import jinja2
import jinja2.nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from monq.core.errors import ValidationError

MAX_TEMPLATE_CHARS = 20_000
MAX_OUTPUT_CHARS = 100_000
MAX_REPEAT = 10_000
MAX_EXPONENT = 64
MAX_RANGE = 1_000
MAX_LOOP_DEPTH = 3
MAX_ITERATIONS = 100_000
MAX_RENDER_S = 0.5
TEMPLATE_FILE = "<template>"  # what Jinja2 names the code of a template from a string


class RenderError(ValueError):
    """A template failed to render (a sandbox refusal, a type error, ...)."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with unsafe access an error and bounded arithmetic."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a "
                            f"{type(obj).__name__} is not allowed")

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent above {MAX_EXPONENT}")
            return operator.pow(left, right)
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(count, int) and (
                    count > MAX_REPEAT or len(seq) * max(count, 0) > MAX_OUTPUT_CHARS):
                raise SecurityError("repetition too large")
        return operator.mul(left, right)


def _range(*args: int) -> range:
    """``range`` of at most `MAX_RANGE` items (Jinja2's own allows 100,000)."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range of more than {MAX_RANGE} items")
    return numbers


@lru_cache(maxsize=1)
def environment() -> _Sandbox:
    env = _Sandbox(autoescape=False, undefined=jinja2.ChainableUndefined,
                   keep_trailing_newline=True)
    env.globals["range"] = _range
    return env


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


def _unsafe_names(tree: jinja2.nodes.Node) -> list[str]:
    found = []
    for attr in tree.find_all(jinja2.nodes.Getattr):
        if attr.attr.startswith("_"):
            found.append(attr.attr)
    for item in tree.find_all(jinja2.nodes.Getitem):
        key = item.arg
        if isinstance(key, jinja2.nodes.Const) and isinstance(key.value, str) \
                and key.value.startswith("_"):
            found.append(key.value)
    for node in tree.find_all(jinja2.nodes.Filter):
        if node.name == "attr":  # |attr("__class__") is an attribute access too
            found += [a.value for a in node.args if isinstance(a, jinja2.nodes.Const)
                      and isinstance(a.value, str) and a.value.startswith("_")]
    return found


def _constant_range(node: jinja2.nodes.Node) -> int | None:
    """The size of ``range(<constants>)``, else None (unknown until rendered)."""
    if isinstance(node, jinja2.nodes.Call) and isinstance(node.node, jinja2.nodes.Name) \
            and node.node.name == "range" and node.args and all(
                isinstance(a, jinja2.nodes.Const) and isinstance(a.value, int)
                and not isinstance(a.value, bool) for a in node.args):
        try:
            return len(range(*(a.value for a in node.args)))  # type: ignore[attr-defined]
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def _loop_problem(node: jinja2.nodes.Node, depth: int = 0, product: int = 1) -> str | None:
    """What makes the loops of a template too costly, seen without rendering it."""
    for child in node.iter_child_nodes():
        if isinstance(child, jinja2.nodes.For):
            size = _constant_range(child.iter)
            if size is not None and size > MAX_RANGE:
                return f"range of more than {MAX_RANGE} items"
            if depth + 1 > MAX_LOOP_DEPTH:
                return f"loops nested more than {MAX_LOOP_DEPTH} deep"
            inner = product * (size or 1)
            if inner > MAX_ITERATIONS:
                return f"loops of more than {MAX_ITERATIONS} iterations"
            problem = _loop_problem(child, depth + 1, inner)
        else:
            size = _constant_range(child)
            if size is not None and size > MAX_RANGE:
                return f"range of more than {MAX_RANGE} items"
            problem = _loop_problem(child, depth, product)
        if problem:
            return problem
    return None


def check_template(source: Any, field: str) -> str:
    """`source` if it is a template that may be stored, else a `ValidationError`
    naming `field`: not a string, too long, a syntax error, reaching for
    attributes the sandbox forbids, or loops too large to render in time."""
    if not isinstance(source, str):
        raise ValidationError(f"{field}: expected a template string", field=field)
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ValidationError(f"{field}: longer than {MAX_TEMPLATE_CHARS} characters",
                              field=field)
    try:
        tree = environment().parse(source)
    except TemplateError as exc:
        raise ValidationError(f"{field}: invalid template: {exc}", field=field) from None
    except RecursionError:
        raise ValidationError(f"{field}: nested too deeply", field=field) from None
    unsafe = _unsafe_names(tree)
    if unsafe:
        raise ValidationError(f"{field}: the template may not use {unsafe[0]!r} "
                              f"(names starting with '_' are not allowed)", field=field)
    problem = _loop_problem(tree)
    if problem:
        raise ValidationError(f"{field}: the template is too costly: {problem}", field=field)
    return source


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
