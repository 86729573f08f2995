"""Times as monq reads them back: a client without ``tz_aware`` returns naive
datetimes, which MongoDB stores as UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """`value`, a naive one read as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
