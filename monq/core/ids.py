"""Ids from outside (query parameters, bodies, command lines, channel names) as
ObjectIds: the one parser, which refuses exactly what is not an id (`InvalidId`, or a
value of another type) and nothing else."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from monq.core.errors import ValidationError


def maybe_object_id(value: Any) -> ObjectId | None:
    """`value` (an ObjectId or its 24 hex digits) as an ObjectId, or None when it is not
    one: for lookups where a malformed id finds nothing, as a missing one does."""
    if isinstance(value, ObjectId):
        return value
    if not isinstance(value, str):  # ObjectId(None) would make a new id
        return None
    try:
        return ObjectId(value)
    except InvalidId:
        return None


def object_id(value: Any, field: str, message: str | None = None) -> ObjectId:
    """`value` as an ObjectId, or a `ValidationError` (a 400) naming `field`, with
    `message` (default: ``<field>: not an id: <value>``)."""
    parsed = maybe_object_id(value)
    if parsed is None:
        raise ValidationError((message or f"{field}: not an id: {value!r}")[:200],
                              field=field)
    return parsed
