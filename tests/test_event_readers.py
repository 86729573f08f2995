"""Every reader of sys.event (the notifier, the summarizer, the API's event hub) takes
an event relayed late, and none takes one twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from monq.api.stream import EventHub
from monq.core.auth.accounts import Accounts
from monq.core.config import Config
from monq.core.store import Store, layout
from monq.core.store.events import new_event
from monq.history.daemon import Summarizer
from monq.notify.daemon import Notifier
from monq.queue.queue import Queue
from monq.queue.states import WAITING
from tests.notify_fixtures import deliveries, notifier_config
from tests.queue_fixtures import DUMMY, WORKER

LATE_S = 600  # far beyond any reader's window before queue.relay_bound_s


async def wait_for(predicate: Any, what: str, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_an_event_relayed_late_reaches_every_reader(store: Store, config: Config) -> None:
    config = notifier_config(config.with_values(api={"event_source": "poll"}), 25)
    queue = Queue(store, config, author="alice")
    job = await queue.enqueue(DUMMY, notifications=[{"on": ["kill_job"], "type": "log"}])
    summarizer = Summarizer(store, config)
    notifier = Notifier(store, config)
    hub = EventHub(store, Accounts(store, config), config)
    seen: list[dict[str, Any]] = []
    hub.observers.append(seen.append)
    await hub.start()
    try:
        await hub.ready.wait()
        await summarizer.tick()
        await notifier.tick()
        assert summarizer.last is not None and summarizer.last.counts == {"pending": 1}
        # readers move on past newer events
        await queue.enqueue(DUMMY)
        await wait_for(lambda: any(e["name"] == "enqueue_job" for e in seen), "the hub")
        await summarizer.tick()
        await notifier.tick()
        # a user's kill whose writer died before relaying its event, long ago
        then = datetime.now(UTC) - timedelta(seconds=LATE_S)
        event = new_event("kill_job", channel="queue", author="alice", now=then,
                          data={"state": "killed"})
        event["_id"] = ObjectId.from_datetime(then)
        killed = await queue.jobs.transition(
            job.id, sources=[str(s) for s in WAITING], event=event,
            set_fields={"state": "killed", "killed_at": then, "finished_at": then})
        assert killed is not None
        await queue.sweep()  # relays the outbox and finishes the move
        assert await store.collection(layout.QUEUE).count_documents({"_id": job.id}) == 0
        await wait_for(lambda: any(e["_id"] == event["_id"] for e in seen), "the hub")
        await summarizer.tick()
        assert summarizer.last is not None and summarizer.last.counts == {"pending": 1}
        await notifier.tick()
        assert [d["transition"] for d in await deliveries(store)] == ["kill_job"]
        # and nobody takes it twice
        await summarizer.tick()
        await notifier.tick()
        await asyncio.sleep(1.5)  # the hub re-reads its window every second
        assert len(await deliveries(store)) == 1
        assert [e["_id"] for e in seen].count(event["_id"]) == 1
    finally:
        await hub.stop()


@pytest.mark.slow
async def test_the_summarizer_never_applies_an_event_twice(store: Store,
                                                          config: Config) -> None:
    """A finished job never shows as running again (it did for a second about every
    12 s, when the re-read window forgot the start before the completion)."""
    queue = Queue(store, config, author="alice")
    summarizer = Summarizer(store, config)
    await queue.enqueue(DUMMY)
    claim = await queue.claim(WORKER)
    assert claim is not None
    await queue.start(claim.job.id, claim.token)
    await summarizer.tick()
    assert summarizer.last is not None and summarizer.last.counts == {"running": 1}
    await asyncio.sleep(1.2)
    await queue.complete(claim.job.id, claim.token)
    await summarizer.tick()
    assert summarizer.last is not None and summarizer.last.counts == {}
    deadline = asyncio.get_running_loop().time() + 15  # past the old 11 s memory
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        await summarizer.tick()
        assert summarizer.last is not None and summarizer.last.counts == {}, \
            summarizer.last.counts
