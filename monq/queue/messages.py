"""Chat messages: what people post into a chat channel becomes an event in sys.event,
delivered to the channel's subscribers like every other event."""

from __future__ import annotations

from monq.core.store import Store
from monq.core.store.events import EventStore, new_event


async def post_message(store: Store, channel: str, author: str, text: str) -> None:
    """Store `text` as a ``message`` event on `channel` (checked by the caller)."""
    await EventStore(store).insert([new_event("message", channel=channel, author=author,
                                              data={"text": text})])
