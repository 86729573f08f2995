"""Job numbers: reserved in blocks per process (one `Store`), unique across
processes, increasing within one, and handed back by a process that closes, so a
short-lived enqueuer (``monq enqueue``, a stopped server) leaves no gap."""

import asyncio

from monq.core.config import Config
from monq.core.store import Store, counters, layout
from monq.core.store.counters import BLOCK, MAX_BLOCK, CounterStore, NumberBlocks
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue
from tests.queue_fixtures import DUMMY


async def test_concurrent_first_reservations_all_get_distinct_numbers(db_url: str) -> None:
    """Several processes (schedulers, API servers) enqueueing at once on a fresh
    database race to create the counter."""
    stores = [Store(db_url, timeout_s=10) for _ in range(3)]
    try:
        for _ in range(10):
            await stores[0].collection(layout.COUNTER).delete_many({})
            for s in stores:
                s.number_blocks = None  # each round fresh processes, as far as numbers go
            firsts = await asyncio.gather(*(CounterStore(s).reserve_numbers(2)
                                            for s in stores))
            numbers = [n for first in firsts for n in (first, first + 1)]
            # distinct ranges; a server may have applied a colliding try, leaving a gap
            assert len(set(numbers)) == 6 and min(numbers) >= 1
    finally:
        for s in stores:
            s.number_blocks = None  # nothing to hand back: only the reservations count
            await s.close()


def test_a_process_reserves_a_block_and_bigger_ones_while_busy() -> None:
    blocks = NumberBlocks()
    assert [blocks.next_size(1, now=10.0 + i * 2) for i in range(3)] == [BLOCK] * 3
    busy = [blocks.next_size(1, now=20.0 + i * 0.01) for i in range(counters.BUSY_RESERVATIONS + 3)]
    assert busy[:counters.BUSY_RESERVATIONS - 1] == [BLOCK] * (counters.BUSY_RESERVATIONS - 1)
    assert busy[counters.BUSY_RESERVATIONS - 1:] == [2 * BLOCK, MAX_BLOCK, MAX_BLOCK, MAX_BLOCK]
    assert blocks.next_size(BLOCK + 5, now=30.0) == BLOCK + 5  # quiet: what a batch needs
    assert blocks.next_size(1, now=30.1) == BLOCK


async def test_a_closed_process_leaves_no_gap(db_url: str, store: Store,
                                             config: Config) -> None:
    """Three `monq enqueue` processes one after another, then a batch."""
    numbers = []
    for _ in range(3):
        async with Store(db_url, timeout_s=10) as cli:
            numbers.append((await Queue(cli, config).enqueue(DUMMY)).number)
    async with Store(db_url, timeout_s=10) as cli:
        jobs = await Queue(cli, config).enqueue_many([EnqueueRequest(DUMMY)] * 3)
    numbers += [j.number for j in jobs]
    numbers.append((await Queue(store, config).enqueue(DUMMY)).number)
    assert numbers == [1, 2, 3, 4, 5, 6, 7]


async def test_a_process_hands_back_nothing_once_another_reserved_after_it(
        db_url: str, store: Store, config: Config) -> None:
    first, second = Store(db_url, timeout_s=10), Store(db_url, timeout_s=10)
    try:
        a = (await Queue(first, config).enqueue(DUMMY)).number
        b = (await Queue(second, config).enqueue(DUMMY)).number
        await first.close()  # its block is not the last: handing it back would repeat b's
        c = (await Queue(second, config).enqueue(DUMMY)).number
        d = (await Queue(store, config).enqueue(DUMMY)).number
    finally:
        await first.close()
        await second.close()
    # the first process's rest is a gap; the second's numbers keep increasing, and a
    # third process's start above both
    assert (a, b, c, d) == (1, BLOCK + 1, BLOCK + 2, 2 * BLOCK + 1)
    async with Store(db_url, timeout_s=10) as later:  # the third still holds its block
        assert (await Queue(later, config).enqueue(DUMMY)).number == d + BLOCK


async def test_two_busy_processes_never_share_a_number(db_url: str, store: Store,
                                                       config: Config) -> None:
    other = Store(db_url, timeout_s=10)
    queues = [Queue(store, config), Queue(other, config)]

    async def enqueue(queue: Queue) -> list[int]:
        numbers = []
        for i in range(40):
            if i % 10 == 9:
                numbers += [j.number for j in await queue.enqueue_many(
                    [EnqueueRequest(DUMMY)] * 7)]
            else:
                numbers.append((await queue.enqueue(DUMMY)).number)
        return numbers

    try:
        mine, theirs = await asyncio.gather(*(enqueue(q) for q in queues))
    finally:
        await other.close()
    assert len(set(mine) | set(theirs)) == len(mine) + len(theirs)
    assert mine == sorted(mine) and theirs == sorted(theirs)  # increasing per process
    stored = await store.collection(layout.QUEUE).distinct("number")
    assert sorted(stored) == sorted(mine + theirs)


async def test_a_forked_child_neither_uses_nor_hands_back_its_parents_block(
        db_url: str, store: Store, config: Config) -> None:
    parent = (await Queue(store, config).enqueue(DUMMY)).number
    blocks = store.number_blocks
    inherited = NumberBlocks(next=blocks.next, end=blocks.end, pid=blocks.pid + 1)
    store.number_blocks = inherited  # as a child of a fork finds its parent's
    child = (await Queue(store, config).enqueue(DUMMY)).number
    assert child == parent + BLOCK  # a block of its own, above the parent's
    assert store.number_blocks.next == child + 1
    store.number_blocks.pid += 1  # a copy inherited by a fork hands nothing back
    await CounterStore(store).give_back_numbers()
    counter = await store.collection(layout.COUNTER).find_one({"_id": "job_number"})
    assert counter["n"] == parent + 2 * BLOCK - 1


async def test_numbers_start_again_after_the_database_is_dropped(
        db_url: str, config: Config) -> None:
    async with Store(db_url, timeout_s=10) as store, Store(db_url, timeout_s=10) as other:
        await Queue(store, config).enqueue(DUMMY)
        await store.drop_database()
        again = (await Queue(store, config).enqueue(DUMMY)).number
        theirs = (await Queue(other, config).enqueue(DUMMY)).number
    assert (again, theirs) == (1, BLOCK + 1)  # nothing left of the dropped block
