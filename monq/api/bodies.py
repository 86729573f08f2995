"""Request bodies: parsed within hard limits and checked against the route's closed
schema before a handler sees them.

Every write route declares its body as a small JSON schema (``BaseHandler.bodies``,
also published in /openapi.json); a route that declares none takes no body. What is
checked here, for every body, so that no handler has to remember it:

* size (``api.max_body_bytes``, a 413) and nesting depth (`MAX_DEPTH` levels);
* keys: strings, never starting with ``$`` nor holding ``.`` (they would reach
  MongoDB as operators or paths), at any depth;
* values MongoDB and the rest of monq can hold: integers within 64 bits, finite
  numbers, text without lone surrogates (which UTF-8, and so BSON, cannot carry);
* the schema: required and unknown keys, types (``true`` is not an integer and
  ``"false"`` not a boolean), ranges, lengths, enumerations, patterns.

Every refusal is a `ValidationError` whose message starts with the path of the
field (``chain[0].priority: ...``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from monq.core.errors import ValidationError

MAX_DEPTH = 32
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_TYPES: dict[str, str] = {"object": "an object", "array": "a list", "string": "a string",
                          "integer": "an integer", "number": "a number",
                          "boolean": "true or false", "null": "null"}


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw`, or a `ValidationError` about the body."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValidationError(f"body: nested deeper than {MAX_DEPTH} levels",
                              field="body") from None
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("body: not valid JSON", field="body") from None


def _label(path: str) -> str:
    return path or "body"


def check_values(value: Any, path: str = "", depth: int = 0) -> None:
    """Refuse what no route accepts anywhere in a body (see the module docstring)."""
    field = path or "body"
    if depth > MAX_DEPTH:
        raise ValidationError(f"{field}: nested deeper than {MAX_DEPTH} levels", field=field)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("$") or "." in key or \
                    not _encodable(key):
                raise ValidationError(f"{field}: invalid key {key!r}"[:200], field=field)
            check_values(item, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_values(item, f"{path}[{index}]", depth + 1)
    else:
        problem = _scalar_problem(value)
        if problem:
            raise ValidationError(f"{field}: {problem}", field=field)


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        return "integer out of range (64 bits)"
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    if isinstance(value, str) and not _encodable(value):
        return "text with a lone surrogate (not UTF-8)"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is(kind: str, value: Any) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return value is None


def validate(schema: dict[str, Any], value: Any, path: str = "") -> None:
    """Check `value` against `schema` (the subset of JSON schema monq's routes use)."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is(k, value) for k in kinds):
            expected = " or ".join(_TYPES[k] for k in kinds)
            raise ValidationError(f"{_label(path)}: expected {expected}", field=path or "body")
    if "enum" in schema and value not in schema["enum"]:
        raise ValidationError(f"{_label(path)}: one of "
                              f"{', '.join(map(str, schema['enum']))}", field=path or "body")
    if isinstance(value, dict):
        _validate_object(schema, value, path)
    elif isinstance(value, list):
        _validate_array(schema, value, path)
    elif isinstance(value, str):
        _validate_string(schema, value, path)
    elif _is("number", value):
        _validate_number(schema, value, path)


def _validate_array(schema: dict[str, Any], value: list[Any], path: str) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise ValidationError(f"{_label(path)}: at most {schema['maxItems']} items",
                              field=path or "body")
    for index, item in enumerate(value):
        if "items" in schema:
            validate(schema["items"], item, f"{path}[{index}]")


def _validate_number(schema: dict[str, Any], value: float, path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise ValidationError(f"{_label(path)}: at least {schema['minimum']}",
                              field=path or "body")
    if "maximum" in schema and value > schema["maximum"]:
        raise ValidationError(f"{_label(path)}: at most {schema['maximum']}",
                              field=path or "body")


def _validate_object(schema: dict[str, Any], value: dict[str, Any], path: str) -> None:
    properties: dict[str, Any] = schema.get("properties", {})
    for key in value:
        if key not in properties and schema.get("additionalProperties") is False:
            where = f"{path}.{key}" if path else key
            raise ValidationError(f"{where}: unknown field {key!r}"[:200], field=where)
    for key in schema.get("required", ()):
        if key not in value:
            where = f"{path}.{key}" if path else key
            raise ValidationError(f"{where}: required", field=where)
    for key, item in value.items():
        if key in properties:
            validate(properties[key], item, f"{path}.{key}" if path else key)


def _validate_string(schema: dict[str, Any], value: str, path: str) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise ValidationError(f"{_label(path)}: at most {schema['maxLength']} characters",
                              field=path or "body")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise ValidationError(f"{_label(path)}: at least {schema['minLength']} characters",
                              field=path or "body")
    # "$" would let a trailing newline through in Python: the end is the end (\Z)
    if "pattern" in schema and not re.search(re.sub(r"\$$", r"\\Z", schema["pattern"]), value):
        raise ValidationError(f"{_label(path)}: not in the expected form",
                              field=path or "body")


NO_BODY: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
