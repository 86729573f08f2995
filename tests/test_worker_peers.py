"""Idle workers of a pool do not all claim at once on a new job: the one first in
the job's order (a hash of the job's and the workers' ids) claims at once, the
others after their turn; a job whose first worker is listed but gone still starts.
The workers run in this process (their executors are real processes), each with
its own store, so that the tests can count each one's claims."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from bson import ObjectId

from monq.core.config import Config
from monq.core.store import Store
from monq.core.store.workers import WorkerStore
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue
from monq.worker import peers
from monq.worker.daemon import Worker
from monq.worker.peers import Peer, claim_rank
from tests.test_worker_ahead import ClaimQueries, running, wait_until, worker_config
from tests.worker_fixtures import wait_job

pytestmark = pytest.mark.slow

NOOP = "monq.jobs.bench.NoopJob"


def test_each_worker_has_its_own_place_and_each_comes_first_for_some_jobs() -> None:
    pool = [Peer(f"w{i}", frozenset()) for i in range(4)]
    firsts = {p.id: 0 for p in pool}
    for _ in range(400):
        job = ObjectId()
        ranks = [claim_rank(job, (), me, pool) for me in pool]
        assert sorted(ranks) == [0, 1, 2, 3]  # every worker computes the same order
        firsts[pool[ranks.index(0)].id] += 1
    assert all(count >= 50 for count in firsts.values()), firsts  # 100 each, evenly


def test_only_workers_with_the_jobs_tags_take_places_before_others() -> None:
    gpu = Peer("gpu", frozenset({"gpu"}))
    plain = [Peer(f"w{i}", frozenset()) for i in range(5)]
    for _ in range(50):
        # of the workers that may run a gpu job, only the gpu worker is listed
        assert claim_rank(ObjectId(), ["gpu"], gpu, [gpu, *plain]) == 0
    # a worker not listed yet (or a list not read yet) is placed as well
    stranger = Peer("new", frozenset())
    assert claim_rank(ObjectId(), (), stranger, []) == 0
    assert 0 <= claim_rank(ObjectId(), (), stranger, plain) <= 5


@contextlib.asynccontextmanager
async def pool_of(db_url: str, config: Config, count: int
                  ) -> AsyncIterator[list[tuple[Worker, ClaimQueries]]]:
    """`count` idle workers (one slot each), each counting its claims, that know of
    each other."""
    counters = [ClaimQueries() for _ in range(count)]
    stores = [Store(db_url, timeout_s=10, event_listeners=[c]) for c in counters]
    workers = [Worker(s, worker_config(config), concurrency=1) for s in stores]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(running(worker))
            await wait_until(lambda: all(w.watching for w in workers), "the change streams")
            for worker in workers:  # as after worker.dead_after_s / 3
                worker._peers_read = -float("inf")
                worker._read_peers_soon()
            await wait_until(lambda: all(len(w._peers) >= count
                                         for w in workers), "the workers to know each other")
            await asyncio.sleep(0.5)  # the start-up claims are over
            yield list(zip(workers, counters, strict=True))
    finally:
        for store in stores:
            await store.close()


def first_for(job_id: ObjectId, workers: Sequence[Peer]) -> str:
    return next(p.id for p in workers if claim_rank(job_id, (), p, workers) == 0)


async def test_a_new_job_is_claimed_at_once_by_its_first_worker_alone(
        db_url: str, queue: Queue, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "CLAIM_DEFER_S", 30.0)  # the others' turns never come here
    async with pool_of(db_url, config, 3) as pool:
        listed = pool[0][0]._peers
        for _ in range(3):
            for _, counter in pool:
                counter.reset()
            job_id = ObjectId()
            await queue.enqueue_many([EnqueueRequest(NOOP, job_id=job_id)])
            done = await wait_job(queue, job_id, "complete", timeout_s=20)
            first = first_for(job_id, listed)
            assert done.locked is not None and done.locked.worker == first
            # the others sent no claim (the first may claim again once its slot is free)
            assert [c.count for w, c in pool if w.ref.id != first] == [0, 0]
            # the first took it by its id, as its change stream showed it: no read first
            assert next(c for w, c in pool if w.ref.id == first).kinds[0] == "by_id"


async def test_workers_whose_turn_was_to_come_make_no_claim_once_the_job_is_taken(
        db_url: str, queue: Queue, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "CLAIM_DEFER_S", 0.3)  # turns at 0.3 s and 0.6 s
    async with pool_of(db_url, config, 3) as pool:
        listed = pool[0][0]._peers
        for _, counter in pool:
            counter.reset()
        job_ids = [ObjectId() for _ in range(3)]
        for job_id in job_ids:
            await queue.enqueue_many([EnqueueRequest(NOOP, job_id=job_id)])
            await wait_job(queue, job_id, "complete", timeout_s=20)
        await asyncio.sleep(1.0)  # past every turn
        # each job was claimed once, by its first worker; its later workers saw that
        # claim and dropped theirs (a worker may read once its slot is free)
        by_id = {w.ref.id: c.kinds.count("by_id") for w, c in pool}
        firsts = [first_for(j, listed) for j in job_ids]
        assert by_id == {w.ref.id: firsts.count(w.ref.id) for w, _ in pool}
        assert all(not w._deferred for w, _ in pool)


async def test_a_job_whose_first_worker_is_gone_starts_on_another_after_its_turn(
        db_url: str, store: Store, queue: Queue, config: Config,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "CLAIM_DEFER_S", 0.2)
    gone = "gone-worker"  # killed a moment ago: still listed alive
    await WorkerStore(store).register({
        "_id": gone, "host": "h", "pid": 1, "pool": "default", "concurrency": 1, "tags": [],
        "started_at": datetime.now(UTC), "heartbeat": datetime.now(UTC), "jobs": []})
    async with pool_of(db_url, config, 2) as pool:
        listed = pool[0][0]._peers
        assert gone in {p.id for p in listed}
        job_id = next(j for j in iter(ObjectId, None) if first_for(j, listed) == gone)
        await queue.enqueue_many([EnqueueRequest(NOOP, job_id=job_id)])
        done = await wait_job(queue, job_id, "complete", timeout_s=20)
        assert done.locked is not None and done.locked.worker != gone
        assert done.started_at is not None
        waited_s = (done.started_at - done.enqueued["at"]).total_seconds()
        assert waited_s >= 0.2  # no worker claimed before its turn
