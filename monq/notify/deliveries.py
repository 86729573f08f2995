"""Notification deliveries for people: listing, reading and resending them (the API
and ``monq notify`` call these; the notifier makes and sends them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from monq.core.errors import NotFound, ValidationError
from monq.core.store import Store
from monq.core.store.notifications import NotificationStore

STATES = ("pending", "delivered", "failed")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class Delivery:
    id: str
    job_id: ObjectId
    number: int | None
    job_name: str
    event_id: ObjectId
    transition: str
    type: str
    state: str
    attempts: int
    max_attempts: int
    next_at: datetime | None
    created: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None
    language: str | None = None
    resent: int = 0
    payload: dict[str, Any] | None = None
    rule: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Delivery:
        return cls(id=doc["_id"], job_id=doc["job_id"], number=doc.get("number"),
                   job_name=str(doc.get("job_name")), event_id=doc["event_id"],
                   transition=doc["transition"], type=doc["type"], state=doc["state"],
                   attempts=doc.get("attempts", 0), max_attempts=doc.get("max_attempts", 1),
                   next_at=doc.get("next_at"), created=doc["created"],
                   delivered_at=doc.get("delivered_at"), last_error=doc.get("last_error"),
                   language=doc.get("language"), resent=doc.get("resent", 0),
                   payload=doc.get("payload"), rule=doc.get("rule") or {})

    def to_public(self) -> dict[str, Any]:
        """JSON-friendly, for the API and the CLI."""
        return {"_id": self.id, "job_id": str(self.job_id), "number": self.number,
                "job_name": self.job_name, "event_id": str(self.event_id),
                "transition": self.transition, "type": self.type, "state": self.state,
                "attempts": self.attempts, "max_attempts": self.max_attempts,
                "next_at": _iso(self.next_at) if self.state == "pending" else None,
                "created": _iso(self.created), "delivered_at": _iso(self.delivered_at),
                "last_error": self.last_error, "language": self.language,
                "resent": self.resent, "payload": self.payload, "rule": self.rule}


def check_delivery_id(value: str) -> str:
    text = str(value).strip()
    if len(text) != 24 or any(c not in "0123456789abcdef" for c in text):
        raise ValidationError(f"not a notification id: {value!r}", field="id")
    return text


class Notifications:
    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.store = NotificationStore(store)
        self.clock = clock or (lambda: datetime.now(UTC))

    async def get(self, delivery_id: str) -> Delivery:
        doc = await self.store.get(check_delivery_id(delivery_id))
        if doc is None:
            raise NotFound(f"no notification {delivery_id}")
        return Delivery.from_document(doc)

    async def page(self, *, states: Sequence[str] = (), job_id: ObjectId | None = None,
                   names: Sequence[str] | None = None, skip: int = 0, limit: int = 50
                   ) -> tuple[list[Delivery], int]:
        for state in states:
            if state not in STATES:
                raise ValidationError(f"state: one of {', '.join(STATES)}", field="state")
        docs, total = await self.store.page(states=states, job_id=job_id, names=names,
                                            skip=skip, limit=limit)
        return [Delivery.from_document(d) for d in docs], total

    async def job_names(self) -> list[str]:
        return await self.store.job_names()

    async def resend(self, delivery_id: str) -> Delivery:
        """Send it again now (whatever its state), with its attempts renewed."""
        doc = await self.store.resend(check_delivery_id(delivery_id), self.clock())
        if doc is None:
            raise NotFound(f"no notification {delivery_id}")
        return Delivery.from_document(doc)
