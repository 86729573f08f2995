"""The one JSON encoding of monq's values: what the API replies, the event websocket
sends and the CLI prints are the same text for the same document.

Times are ISO 8601 with their offset (a naive time is UTC: monq writes only UTC), and
ObjectIds and anything else without a JSON form are their string.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from monq.core.times import as_utc


def default(value: Any) -> Any:
    """The JSON form of a value `json` does not know (its ``default=`` hook)."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    return str(value)  # ObjectIds, and anything else a document may hold


def dumps(value: Any, *, indent: int | None = None, compact: bool = False) -> str:
    """`value` as JSON text; `compact` drops the spaces after separators (frames sent
    to many sockets)."""
    return json.dumps(value, default=default, indent=indent,
                      separators=(",", ":") if compact else None)


def jsonable(value: Any) -> Any:
    """`value` as the API sends it (times as ISO strings, ObjectIds as hex), in plain
    JSON types."""
    return json.loads(dumps(value))


def bounded(value: Any, max_chars: int) -> Any:
    """A value a job returned, fit to store: JSON-native values as they are while their
    text is within `max_chars`, anything else (or longer) as its ``repr`` cut there."""
    text = repr(value)
    if isinstance(value, str | int | float | bool | type(None) | dict | list):
        return value if len(text) <= max_chars else text[:max_chars]
    return text[:max_chars]
