"""The in-memory queue model: its running counts always equal a recount."""

from bson import ObjectId
from hypothesis import given
from hypothesis import strategies as st

from monq.history.summary import QueueModel, summarize

EVENTS = ["enqueue_job", "request_start_job", "flag_zombie", "flag_nonstop",
          "request_kill_job", "request_remove_job", "reset_job", "complete_job"]
STATES = ["pending", "running", "deferred", "failed", "complete", "error", "killed"]
IDS = [ObjectId() for _ in range(6)]


@given(st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(EVENTS),
                          st.sampled_from(STATES), st.sampled_from(["a.A", "b.B"])),
                max_size=60))
def test_counts_match_a_recount(steps: list[tuple[ObjectId, str, str, str]]) -> None:
    model = QueueModel()
    model.load([{"_id": IDS[0], "name": "a.A", "state": "pending"}])
    for job_id, name, state, job_name in steps:
        model.apply({"name": name, "data": {"_id": job_id, "state": state, "name": job_name}})
        assert model.summary() == summarize(model.jobs.values())
    assert all(n > 0 for n in model.counts.values())
