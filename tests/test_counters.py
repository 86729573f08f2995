"""The job number counter under concurrent first use (several schedulers or API
servers enqueueing at once on a fresh database)."""

import asyncio

from monq.core.store import Store, layout
from monq.core.store.counters import CounterStore


async def test_concurrent_first_reservations_all_get_distinct_numbers(store: Store) -> None:
    counters = [CounterStore(store) for _ in range(3)]
    for _ in range(10):
        await store.collection(layout.COUNTER).delete_many({})
        firsts = await asyncio.gather(*(c.reserve_numbers(2) for c in counters))
        numbers = [n for first in firsts for n in (first, first + 1)]
        # distinct ranges; a server may have applied a colliding try, leaving a gap
        assert len(set(numbers)) == 6 and min(numbers) >= 1
