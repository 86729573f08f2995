"""monq.testing.JobRunner: a user's job runs inline, through the real queue."""

from __future__ import annotations

import pytest

from monq.testing import JobRunner, RunnerError


@pytest.fixture
def runner(db_url: str) -> JobRunner:
    with JobRunner(db_url) as runner:
        yield runner  # type: ignore[misc]


def test_a_job_runs_inline_and_leaves_what_a_worker_leaves(runner: JobRunner) -> None:
    job = runner.run("tests.testing_jobs.Adder", a=2, b=3)
    assert job.state == "complete" and job.result == {"sum": 5}
    progress = [e for e in runner.queue.events(job.id) if e["name"] == "progress_job"]
    assert progress[0]["data"]["progress"] == 0.5 and progress[0]["data"]["message"] == "half way"
    assert runner.events(job) == ["enqueue_job", "request_start_job", "start_job",
                                  "progress_job", "complete_job"]
    assert [line["message"] for line in runner.log(job)] == ["adding 2 and 3", "printed too"]
    assert runner.run("tests.testing_jobs.AsyncAdder", {"a": 41}).result == 42


def test_a_failure_a_deferral_and_bad_arguments_end_as_with_a_worker(
        runner: JobRunner) -> None:
    failed = runner.run("tests.testing_jobs.Broken")
    assert failed.state == "error"
    assert "ValueError: the data is not there" in failed.last_error
    assert "Traceback" in failed.last_error
    deferred = runner.run("tests.testing_jobs.Waiting")
    assert deferred.state == "deferred"
    with pytest.raises(Exception, match="argument 'a'"):
        runner.run("tests.testing_jobs.Adder", a="two")
    with pytest.raises(Exception, match="nowhere"):
        runner.run("tests.nowhere.Job")


def test_a_held_job_is_refused_not_run(runner: JobRunner) -> None:
    with pytest.raises(RunnerError, match="cannot run now"):
        runner.run("tests.testing_jobs.Adder", a=1, options={"hold": True})


def test_without_a_url_it_brings_its_own_embedded_database() -> None:
    with JobRunner() as runner:
        assert runner.run("tests.testing_jobs.Adder", a=1).result == {"sum": 2}
