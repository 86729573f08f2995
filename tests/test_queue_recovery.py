"""Dependencies, chains, listing, and repairs after a process died between writes."""

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from monq.core.errors import ValidationError
from monq.core.store import Store, layout
from monq.core.store.events import new_event
from monq.core.store.jobs import JobFilter
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import FINISH_GRACE_S, Queue, WorkerRef
from monq.queue.states import State
from tests.queue_fixtures import DUMMY, WORKER, event_names


async def run_to_end(queue: Queue, *, fail: bool = False) -> ObjectId:
    c = await queue.claim(WORKER)
    assert c is not None
    if fail:
        await queue.fail(c.job.id, c.token, "broken")
    else:
        await queue.complete(c.job.id, c.token)
    return c.job.id


async def test_dependent_waits_until_its_dependencies_complete(queue: Queue) -> None:
    a = await queue.enqueue(DUMMY, priority=0)
    b = await queue.enqueue(DUMMY, priority=0)
    c = await queue.enqueue(DUMMY, priority=9, wait_for=[a.id, b.id])
    assert await run_to_end(queue) == a.id  # c has the higher priority but waits
    assert await run_to_end(queue) == b.id
    assert await run_to_end(queue) == c.id


async def test_dependent_fails_when_a_dependency_ends_in_error(queue: Queue) -> None:
    a = await queue.enqueue("monq.jobs.example.FailingJob")
    b = await queue.enqueue(DUMMY, wait_for=[a.id])
    await run_to_end(queue, fail=True)
    failed = await queue.get(b.id)
    assert failed.state == State.ERROR
    assert failed.last_error == "dependency #1 ended error"
    assert await queue.claim(WORKER) is None


async def test_dependency_already_complete_does_not_block(queue: Queue) -> None:
    a = await queue.enqueue(DUMMY)
    await run_to_end(queue)
    b = await queue.enqueue(DUMMY, wait_for=[a.id])
    assert b.state == State.PENDING and b.wait_for == ()
    assert await run_to_end(queue) == b.id


async def test_a_dependency_that_ended_badly_is_refused(queue: Queue) -> None:
    a = await queue.enqueue(DUMMY)
    await queue.kill(a.id)
    with pytest.raises(ValidationError, match=f"wait_for: job {a.id} ended killed"):
        await queue.enqueue(DUMMY, wait_for=[a.id])


async def test_sweep_unblocks_when_the_completion_raced(queue: Queue, store: Store) -> None:
    a = await queue.enqueue(DUMMY)
    b = await queue.enqueue(DUMMY, wait_for=[a.id])
    c = await queue.claim(WORKER)
    assert c is not None
    await queue.complete(c.job.id, c.token)
    # as if b's enqueue had checked a just before it completed
    await store.collection(layout.QUEUE).update_one(
        {"_id": b.id}, {"$set": {"blocked": True, "wait_for": [a.id]}})
    assert (await queue.sweep()).unblocked == 1
    assert await run_to_end(queue) == b.id


async def test_chain_enqueues_once_on_completion(queue: Queue) -> None:
    a = await queue.enqueue(DUMMY, chain=[EnqueueRequest(DUMMY, {"sleep": 0.5}),
                                          EnqueueRequest("monq.jobs.example.ArgsJob",
                                                         {"name": "next"})])
    await run_to_end(queue)
    jobs, total = await queue.list_jobs()
    assert total == 2
    assert {j.name for j in jobs} == {DUMMY, "monq.jobs.example.ArgsJob"}
    assert all(j.parent_id == a.id and j.enqueued["origin"] == "chain" for j in jobs)


async def test_sweep_relays_an_outbox_left_by_a_dead_process(queue: Queue,
                                                             store: Store) -> None:
    job = await queue.enqueue(DUMMY)
    # A process wrote a state change with its event, then died before relaying it.
    event = new_event("hold_job", channel="queue", author="ghost", data={"state": "pending"})
    event["created"] = datetime.now(UTC) - timedelta(seconds=5)  # long enough ago
    await store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$set": {"held": True}, "$push": {"outbox": event}})
    first, second = await queue.sweep(), await queue.sweep()
    assert (first.relayed, second.relayed) == (1, 0)
    assert await event_names(queue, job.id) == ["enqueue_job", "hold_job"]
    relayed = await store.collection(layout.EVENT).find_one({"_id": event["_id"]})
    assert relayed["data"]["number"] == job.number


async def test_relay_of_an_event_already_in_sys_event_is_not_doubled(
        queue: Queue, store: Store) -> None:
    job = await queue.enqueue(DUMMY)
    events = await queue.events(job.id)
    # The relay inserted the event but died before pulling it from the outbox.
    await store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$push": {"outbox": {k: v for k, v in events[0].items()
                                               if k != "data"} | {"data": {}}}})
    await store.collection(layout.QUEUE).update_one(
        {"_id": job.id}, {"$set": {"outbox.0.created": datetime.now(UTC) - timedelta(10)}})
    await queue.sweep()
    assert await event_names(queue, job.id) == ["enqueue_job"]


def after_finish_grace(queue: Queue) -> Queue:
    """The queue as a sweep sees it once the writer had its time to finish the move."""
    return Queue(queue.store, queue.config, author="sweeper", clock=lambda: datetime.now(UTC)
                 + timedelta(seconds=FINISH_GRACE_S + 1))


async def test_sweep_finishes_a_move_to_the_journal(queue: Queue, store: Store) -> None:
    job = await queue.enqueue(DUMMY)
    c = await queue.claim(WORKER)
    assert c is not None
    # Complete written, then the process died before the move.
    await queue.jobs.transition(
        job.id, sources=["running"], token=c.token,
        set_fields={"state": "complete", "finished_at": datetime.now(UTC)},
        event=new_event("complete_job", channel="queue", author="w1",
                        data={"state": "complete"}))
    assert await queue.jobs.in_both(job.id) == (True, False)
    report = await after_finish_grace(queue).sweep()
    assert report.moved == 1
    assert await queue.jobs.in_both(job.id) == (False, True)
    assert (await event_names(queue, job.id))[-1] == "complete_job"


async def test_sweep_resolves_a_job_in_both_collections(queue: Queue, store: Store) -> None:
    job = await queue.enqueue(DUMMY)
    c = await queue.claim(WORKER)
    assert c is not None
    await queue.complete(c.job.id, c.token)
    doc = await store.collection(layout.JOURNAL).find_one({"_id": job.id})
    # the delete never happened, and the job changed in the queue since (a restart
    # noted on it, say): the move again replaces the journal's copy with it
    await store.collection(layout.QUEUE).insert_one({**doc, "result": "noted later"})
    assert await queue.jobs.in_both(job.id) == (True, True)
    await after_finish_grace(queue).sweep()
    assert await queue.jobs.in_both(job.id) == (False, True)
    assert (await event_names(queue, job.id)).count("complete_job") == 1
    assert (await queue.get(job.id)).result == "noted later"


async def test_list_by_worker(queue: Queue, store: Store) -> None:
    """A listing by worker finds the jobs it runs, and in the journal those it ran;
    a job that waits, or a state filter without running, finds none in the queue."""
    first = await queue.enqueue(DUMMY)
    waiting = await queue.enqueue(DUMMY)
    other = Queue(store, queue.config, author="w2")
    assert (await queue.claim(WORKER)).job.id == first.id  # type: ignore[union-attr]
    assert (await other.claim(WorkerRef(id="w2", host="h", pid=2))).job.id \
        == waiting.id  # type: ignore[union-attr]
    third = await queue.enqueue(DUMMY)
    page, total = await queue.list_jobs(JobFilter(worker=WORKER.id))
    assert total == 1 and [j.id for j in page] == [first.id]
    page, total = await queue.list_jobs(JobFilter(worker=WORKER.id, states=("pending",)))
    assert total == 0 and page == []
    page, _ = await queue.list_jobs(JobFilter(worker=WORKER.id, states=("running", "pending")))
    assert [j.id for j in page] == [first.id]
    claim = await queue.claim(WORKER)
    assert claim is not None and claim.job.id == third.id
    await queue.complete(claim.job.id, claim.token)
    page, total = await queue.list_jobs(JobFilter(worker=WORKER.id), finished=True)
    assert total == 1 and [j.id for j in page] == [third.id]


async def test_only_jobs_enqueued_with_dependencies_have_a_wait_list(queue: Queue,
                                                                     store: Store) -> None:
    """The sparse ``wait_for`` index then holds only them, and the sweep's look for
    blocked jobs reads no other job."""
    first = await queue.enqueue(DUMMY)
    second = await queue.enqueue(DUMMY, wait_for=[first.id])
    raw = store.collection(layout.QUEUE)
    assert "wait_for" not in await raw.find_one({"_id": first.id})  # type: ignore[operator]
    assert (await raw.find_one({"_id": second.id}))["wait_for"] == [first.id]  # type: ignore[index]
    assert (await queue.get(first.id)).wait_for == ()
    assert [d["_id"] for d in await queue.jobs.blocked()] == [second.id]


async def test_list_filters_and_pages(queue: Queue) -> None:
    for i in range(5):
        await queue.enqueue(DUMMY, {"sleep": i})
    await queue.enqueue("monq.jobs.example.FailingJob")
    page, total = await queue.list_jobs(JobFilter(name_glob="*.DummyJob"), skip=1, limit=2)
    assert total == 5 and [j.number for j in page] == [2, 3]
    page, total = await queue.list_jobs(JobFilter(number=6))
    assert total == 1 and page[0].name == "monq.jobs.example.FailingJob"
    page, _ = await queue.list_jobs(sort="number", descending=True, limit=1)
    assert page[0].number == 6
    await run_to_end(queue)
    page, total = await queue.list_jobs(finished=True)
    assert total == 1 and page[0].state == State.COMPLETE
    page, total = await queue.list_jobs(JobFilter(name_glob="*Dummy(Job"))
    assert total == 0  # glob characters are escaped, never a regular expression
