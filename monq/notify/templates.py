"""Notification templates: checking them when a rule is made and rendering them when
it fires, in Jinja2's immutable sandbox.

Templates are written by users, so they must not reach Python internals: any
attribute or item whose name starts with ``_`` is refused when the template is
checked (`check_template`), and at render time the sandbox raises instead of
quietly rendering nothing. Output is plain text (no HTML escaping), capped at
`MAX_OUTPUT_CHARS`; repetition and powers are bounded so that a template cannot
exhaust memory.

The variables a template sees are those of `template_context`: ``transition``,
``description``, ``job_id``, ``number``, ``name``, ``state``, ``progress``,
``message``, ``cancelled``, ``worker``, ``error``, ``data`` (the transition's
data, e.g. what was given with progress), ``enqueued_by`` and ``args``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from functools import lru_cache
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


@lru_cache(maxsize=1)
def environment() -> _Sandbox:
    return _Sandbox(autoescape=False, undefined=jinja2.ChainableUndefined,
                    keep_trailing_newline=True)


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


def check_template(source: Any, field: str) -> str:
    """`source` if it is a template that may be stored, else a `ValidationError`
    naming `field`: not a string, too long, a syntax error, or reaching for
    attributes the sandbox forbids."""
    if not isinstance(source, str):
        raise ValidationError(f"{field}: expected a template string", field=field)
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ValidationError(f"{field}: longer than {MAX_TEMPLATE_CHARS} characters",
                              field=field)
    try:
        tree = environment().parse(source)
    except TemplateError as exc:
        raise ValidationError(f"{field}: invalid template: {exc}", field=field) from None
    unsafe = _unsafe_names(tree)
    if unsafe:
        raise ValidationError(f"{field}: the template may not use {unsafe[0]!r} "
                              f"(names starting with '_' are not allowed)", field=field)
    return source


@lru_cache(maxsize=512)
def _compiled(source: str) -> jinja2.Template:
    return environment().from_string(source)


def render(source: str, context: Mapping[str, Any]) -> str:
    """The template rendered with `context`; `RenderError` if it fails."""
    try:
        text = _compiled(source).render(dict(context))
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
            AttributeError, OverflowError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}") from None
    if len(text) > MAX_OUTPUT_CHARS:
        raise RenderError(f"the rendered text is longer than {MAX_OUTPUT_CHARS} characters")
    return text


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
