"""Enqueueing: numbers, document shape, events, and bad input refused with nothing written."""

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from monq.core.errors import BadRequest, Conflict, NotFound, ValidationError
from monq.core.store import Store, layout
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue
from monq.queue.states import State
from tests.queue_fixtures import DUMMY, WORKER


async def test_enqueue_writes_job_and_one_event(queue: Queue, store: Store) -> None:
    job = await queue.enqueue(DUMMY, {"sleep": 1})
    assert job.number == 1
    assert job.state == State.PENDING
    assert job.args == {"sleep": 1.0, "steps": 10}
    assert job.enqueued["by"] == "tester"
    assert job.attempts_left == job.attempts == 1
    events = await queue.events(job.id)
    assert [e["name"] for e in events] == ["enqueue_job"]
    assert events[0]["channel"] == "queue"
    assert events[0]["author"] == "tester"
    assert events[0]["data"]["_id"] == job.id
    assert events[0]["data"]["number"] == 1
    assert events[0]["data"]["name"] == DUMMY
    assert events[0]["data"]["state"] == "pending"
    stored = await store.collection(layout.QUEUE).find_one({"_id": job.id})
    assert stored["outbox"] == []  # relayed


async def test_numbers_increase_also_in_batches(queue: Queue) -> None:
    first = await queue.enqueue(DUMMY)
    batch = await queue.enqueue_many([EnqueueRequest(DUMMY, {"sleep": i}) for i in range(5)])
    assert [j.number for j in batch] == [2, 3, 4, 5, 6]
    assert first.number == 1
    assert (await queue.enqueue(DUMMY)).number == 7


async def test_options_override_class_defaults(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY, priority=7, attempts=3, tags=["x"], pool="p")
    assert (job.priority, job.attempts, job.tags, job.pool) == (7, 3, ("x",), "p")


async def test_get_by_id_and_number(queue: Queue) -> None:
    job = await queue.enqueue(DUMMY)
    assert (await queue.get(job.id)).number == job.number
    assert (await queue.get(job.number)).id == job.id
    assert (await queue.get(str(job.id))).id == job.id
    assert (await queue.get(f"#{job.number}")).id == job.id
    with pytest.raises(NotFound, match="no job 99"):
        await queue.get(99)
    for typed in ("nope", "\u00b3", "\u0663"):  # superscript three, Arabic-Indic three
        with pytest.raises(ValidationError, match="not a job id or number"):
            await queue.get(typed)


@pytest.mark.parametrize(("name", "args", "error", "message"), [
    ("monq.nosuch.Job", None, BadRequest, "unknown job type 'monq.nosuch.Job': no module "
                                        "'monq.nosuch'"),
    ("monq.jobs.example.NoSuch", None, BadRequest,
     "unknown job type 'monq.jobs.example.NoSuch': 'monq.jobs.example' has no 'NoSuch'"),
    ("tests.jobtypes.NOT_A_JOB", None, BadRequest,
     "'tests.jobtypes.NOT_A_JOB' is not a job type (a subclass of monq.Job)"),
    ("tests.brokenjobs.Job", None, BadRequest,
     "job type 'tests.brokenjobs.Job': its module failed to import: ImportError: this "
     "module is broken on purpose"),
    ("DummyJob", None, BadRequest, "job type 'DummyJob' is not a qualified name"),
    ("monq.jobs.example.ArgsJob", {}, ValidationError, "missing required argument 'name'"),
    ("monq.jobs.example.ArgsJob", {"name": 3}, ValidationError,
     "argument 'name': expected a string, got 3"),
    ("monq.jobs.example.ArgsJob", {"name": "a", "count": "2"}, ValidationError,
     "argument 'count': expected an integer, got '2'"),
    ("monq.jobs.example.ArgsJob", {"name": "a", "count": True}, ValidationError,
     "argument 'count': expected an integer, got True"),
    ("monq.jobs.example.ArgsJob", {"name": "a", "mode": "medium"}, ValidationError,
     "argument 'mode': must be one of 'fast', 'slow'"),
    ("monq.jobs.example.ArgsJob", {"name": "a", "colour": "red"}, ValidationError,
     "unknown argument 'colour' for monq.jobs.example.ArgsJob"),
])
async def test_bad_enqueue_is_refused_and_writes_nothing(
        queue: Queue, store: Store, name: str, args: dict | None, error: type,
        message: str) -> None:
    with pytest.raises(error) as info:
        await queue.enqueue(name, args)
    assert str(info.value).startswith(message)
    assert await store.collection(layout.QUEUE).count_documents({}) == 0
    assert await store.collection(layout.EVENT).count_documents({}) == 0


async def test_bad_option_is_refused(queue: Queue, store: Store) -> None:
    with pytest.raises(ValidationError, match="unknown option 'prio'"):
        await queue.enqueue(DUMMY, prio=1)
    with pytest.raises(ValidationError, match="option 'priority': expected int, got 'high'"):
        await queue.enqueue(DUMMY, priority="high")
    with pytest.raises(ValidationError, match="option 'attempts': must be at least 1"):
        await queue.enqueue(DUMMY, attempts=0)
    assert await store.collection(layout.QUEUE).count_documents({}) == 0


async def test_a_bad_job_in_a_batch_writes_nothing(queue: Queue, store: Store) -> None:
    with pytest.raises(ValidationError):
        await queue.enqueue_many([EnqueueRequest(DUMMY),
                                  EnqueueRequest("monq.jobs.example.ArgsJob", {})])
    assert await store.collection(layout.QUEUE).count_documents({}) == 0


async def test_valid_args_get_defaults(queue: Queue) -> None:
    job = await queue.enqueue("monq.jobs.example.ArgsJob", {"name": "a", "ratio": 1})
    assert job.args == {"name": "a", "count": 1, "ratio": 1.0, "mode": "fast", "flag": False}


async def test_unique_allows_one_queued_job_per_args(queue: Queue) -> None:
    first = await queue.enqueue("tests.jobtypes.Unique", {"a": 1})
    with pytest.raises(Conflict, match="already queued"):
        await queue.enqueue("tests.jobtypes.Unique", {"a": 1})
    other = await queue.enqueue("tests.jobtypes.Unique", {"a": 2})
    assert other.number == 3  # the refused one used a number, nothing else
    claim = await queue.claim(WORKER)
    assert claim is not None and claim.job.id == first.id
    await queue.complete(claim.job.id, claim.token)
    again = await queue.enqueue("tests.jobtypes.Unique", {"a": 1})
    assert again.state == State.PENDING


async def test_delay_and_hold(queue: Queue) -> None:
    later = await queue.enqueue(DUMMY, delay_s=60)
    assert later.query_at > datetime.now(UTC) + timedelta(seconds=50)
    held = await queue.enqueue(DUMMY, hold=True)
    assert held.held
    assert await queue.claim(WORKER) is None


async def test_unknown_dependency_is_refused(queue: Queue) -> None:
    with pytest.raises(ValidationError, match="wait_for: no job"):
        await queue.enqueue(DUMMY, wait_for=[ObjectId()])
