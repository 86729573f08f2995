"""The sandbox user-written templates run in (Jinja2's immutable sandbox, with unsafe
access an error and bounded arithmetic and ranges), and `check_template`, which every
template passes when its rule is made: no names starting with ``_``, no loops too
large to render in time. Rendering is the notifier's (`monq.notify.templates`).
"""

from __future__ import annotations

import operator
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
MAX_RANGE = 1_000
MAX_LOOP_DEPTH = 3
MAX_ITERATIONS = 100_000
TEMPLATE_FILE = "<template>"  # what Jinja2 names the code of a template from a string


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
