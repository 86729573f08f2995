"""The synchronous facade scripts and job code use."""

from monq.core.config import Config
from monq.queue.states import State
from monq.queue.sync import SyncQueue
from tests.queue_fixtures import DUMMY


def test_sync_queue_enqueues_and_reads(config: Config) -> None:
    with SyncQueue(config, author="script") as queue:
        job = queue.enqueue(DUMMY, {"sleep": 1})
        assert job.state == State.PENDING and job.enqueued["origin"] == "script"
        assert queue.get(job.number).id == job.id
        held = queue.hold(job.id)
        assert held.held
        jobs, total = queue.list_jobs()
        assert total == 1 and jobs[0].id == job.id
        assert queue.clock is not None  # plain attributes pass through
