"""A property-based state machine: random sequences of queue operations against the
real store, checked after every step against a model of what must be true.

Checked after each step: every job is in exactly one collection and in the state
the model expects; attempts stay within their limit; sys.event holds exactly one
event per transition, in order per job, none lost or duplicated.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from monq.core.config import Config
from monq.core.errors import LeaseLost, TransitionRefused
from monq.core.store import Store, layout, with_database
from monq.queue.queue import Queue, WorkerRef
from monq.queue.states import FINAL, STOPPED, WAITING, State
from tests.interleave import Interleaved

NAME = "monq.jobs.example.DummyJob"
WORKER = WorkerRef("hypo", "host", 1)
MAX_RECOVERIES = 3


@dataclass
class Model:
    id: ObjectId
    order: int
    priority: int
    attempts: int
    attempts_left: int
    state: State = State.PENDING
    held: bool = False
    token: str | None = None
    kill_requested: bool = False
    remove_requested: bool = False
    has_child: bool = False
    recoveries: int = 0
    events: list[str] = field(default_factory=lambda: ["enqueue_job"])


class QueueMachine(RuleBasedStateMachine):
    server_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.url = with_database(self.server_url, f"monq_h_{uuid.uuid4().hex[:10]}")
        self.store = self.run(self._store())
        config = Config().with_values(queue={"zombie_time_s": 30.0,
                                             "max_recoveries": MAX_RECOVERIES})
        self.queue = Queue(self.store, config, author="hypo")
        self.jobs: dict[ObjectId, Model] = {}
        self.order = 0
        self.stale_tokens: list[tuple[ObjectId, str]] = []

    async def _store(self) -> Store:
        store = Store(self.url, timeout_s=10)
        await store.ensure_indexes()
        return store

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.store.drop_database())
        self.run(self.store.close())
        self.loop.close()

    # helpers ------------------------------------------------------------------
    def _add(self, job_id: ObjectId, priority: int, attempts: int) -> Model:
        self.order += 1
        model = Model(job_id, self.order, priority, attempts, attempts)
        self.jobs[job_id] = model
        return model

    def _running(self) -> list[Model]:
        return [m for m in self.jobs.values() if m.state == State.RUNNING]

    def _pick(self, data: st.DataObject, models: list[Model]) -> Model:
        return data.draw(st.sampled_from(sorted(models, key=lambda m: m.order)))

    # rules ----------------------------------------------------------------------
    @initialize()
    def start(self) -> None:
        assert not self.jobs

    @rule(priority=st.integers(0, 2), attempts=st.integers(1, 3), hold=st.booleans())
    def enqueue(self, priority: int, attempts: int, hold: bool) -> None:
        job = self.run(self.queue.enqueue(NAME, priority=priority, attempts=attempts,
                                          retry_delay_s=0, defer_time_s=0, hold=hold))
        model = self._add(job.id, priority, attempts)
        if hold:
            model.held = True

    @rule()
    def claim(self) -> None:
        candidates = [m for m in self.jobs.values() if m.state in WAITING and not m.held]
        claim = self.run(self.queue.claim(WORKER))
        if not candidates:
            assert claim is None
            return
        expected = sorted(candidates, key=lambda m: (-m.priority, m.id))[0]
        assert claim is not None and claim.job.id == expected.id
        expected.state, expected.token = State.RUNNING, claim.token
        expected.attempts_left -= 1
        expected.events.append("request_start_job")

    @precondition(lambda self: self._running())
    @rule(data=st.data(), action=st.sampled_from(["start", "progress", "complete", "fail",
                                                   "defer"]))
    def work(self, data: st.DataObject, action: str) -> None:
        model = self._pick(data, self._running())
        job_id, token = model.id, model.token
        assert token is not None
        if action == "start":
            self.run(self.queue.start(job_id, token))
            model.events.append("start_job")
            return
        if action == "progress":
            self.run(self.queue.progress(job_id, token, 0.5, "half"))
            model.events.append("progress_job")
            return
        self.stale_tokens.append((job_id, token))
        model.token = None
        stop_requested = model.kill_requested or model.remove_requested
        if action in ("fail", "defer") and stop_requested and (
                action == "defer" or model.attempts_left > 0):
            # a job asked to stop does not wait again: it ends killed or removed
            self.run(getattr(self.queue, action)(job_id, token, "x"))
            model.state = State.KILLED if model.kill_requested else State.REMOVED
            model.events.append("kill_job" if model.kill_requested else "remove_job")
            return
        if action == "complete":
            self.run(self.queue.complete(job_id, token))
            model.state = State.COMPLETE
            model.events.append("complete_job")
        elif action == "fail":
            self.run(self.queue.fail(job_id, token, "boom"))
            model.state = State.FAILED if model.attempts_left > 0 else State.ERROR
            model.events.append("failed_job")
        else:
            self.run(self.queue.defer(job_id, token, "later", delay_s=0))
            model.state = State.DEFERRED
            model.attempts_left += 1
            model.events.append("defer_job")

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), action=st.sampled_from(["hold", "resume", "kill", "remove",
                                                   "restart"]))
    def user(self, data: st.DataObject, action: str) -> None:
        model = self._pick(data, list(self.jobs.values()))
        expect_ok, events = self._predict(model, action)
        try:
            result = self.run(getattr(self.queue, action)(model.id))
        except TransitionRefused as exc:
            assert not expect_ok, f"{action} refused: {exc}"
            assert exc.state == model.state
            return
        assert expect_ok, f"{action} of a {model.state} job should be refused"
        model.events += events
        self._apply(model, action, result)

    def _predict(self, model: Model, action: str) -> tuple[bool, list[str]]:
        waiting, running = model.state in WAITING, model.state == State.RUNNING
        if action == "hold":
            return waiting and not model.held, ["hold_job"]
        if action == "resume":
            return waiting and model.held, ["resume_job"]
        if action in ("kill", "remove"):
            flag = model.kill_requested if action == "kill" else model.remove_requested
            if waiting:
                return True, [f"{action}_job"]
            return running and not flag, [f"request_{action}_job"]
        if waiting:
            return True, ["restart_waiting"]
        return model.state in STOPPED, ["restart_stopped"]

    def _apply(self, model: Model, action: str, result: object) -> None:
        if action == "hold":
            model.held = True
        elif action == "resume":
            model.held = False
        elif action in ("kill", "remove"):
            if model.state in WAITING:
                model.state = State.KILLED if action == "kill" else State.REMOVED
            elif action == "kill":
                model.kill_requested = True
            else:
                model.remove_requested = True
        elif model.state in WAITING:
            model.state, model.held = State.PENDING, False
        else:
            if model.has_child:
                model.events.pop()  # a second restart returns the same child, no event
                return
            model.has_child = True
            child = self._add(result.id, result.priority, result.attempts)  # type: ignore[attr-defined]
            assert result.parent_id == model.id  # type: ignore[attr-defined]
            del child

    @precondition(lambda self: any(m.kill_requested or m.remove_requested
                                   for m in self._running()))
    @rule()
    def worker_stops_requested(self) -> None:
        leases = [(m.id, m.token) for m in self._running() if m.token]
        reply = self.run(self.queue.heartbeat(WORKER.id, leases))
        for model in self._running():
            if model.id in reply.kill:
                self.run(self.queue.mark_killed(model.id, model.token))
                model.state = State.KILLED
                model.events.append("kill_job")
            elif model.id in reply.remove:
                self.run(self.queue.mark_removed(model.id, model.token))
                model.state = State.REMOVED
                model.events.append("remove_job")
            else:
                continue
            self.stale_tokens.append((model.id, model.token))  # type: ignore[arg-type]
            model.token = None

    @precondition(lambda self: self._running())
    @rule(data=st.data())
    def worker_dies(self, data: st.DataObject) -> None:
        model = self._pick(data, self._running())
        self.run(self.store.collection(layout.QUEUE).update_one(
            {"_id": model.id},
            {"$set": {"locked.expires": datetime.now(UTC) - timedelta(seconds=1)}}))
        self.run(self.queue.sweep())
        self.stale_tokens.append((model.id, model.token))  # type: ignore[arg-type]
        model.token = None
        model.events.append("flag_zombie")
        if model.kill_requested:
            model.state = State.KILLED
            model.events.append("kill_job")
        elif model.remove_requested:
            model.state = State.REMOVED
            model.events.append("remove_job")
        elif model.recoveries < MAX_RECOVERIES:  # a lost worker costs no attempt
            model.state = State.PENDING
            model.attempts_left += 1
            model.recoveries += 1
            model.events.append("reset_job")
        else:
            model.state = State.ERROR
            model.events.append("reset_job")

    @precondition(lambda self: [m for m in self._running()
                                if not (m.kill_requested or m.remove_requested)])
    @rule(data=st.data(), action=st.sampled_from(["fail", "defer", "release"]),
          stop=st.sampled_from(["kill", "remove"]), at=st.integers(1, 5))
    def user_stops_during_worker_write(self, data: st.DataObject, action: str, stop: str,
                                       at: int) -> None:
        """Concurrent actors: the user's kill (or removal) runs before the worker's
        store call number `at` of its fail/defer/release, at every point; whatever
        the interleaving, the job ends in a state someone will move it out of."""
        model = self._pick(data, [m for m in self._running()
                                  if not (m.kill_requested or m.remove_requested)])
        token = model.token
        assert token is not None
        worker = Queue(self.store, self.queue.config, author=WORKER.id)
        interleaved = Interleaved(worker.jobs, at,
                                  lambda: getattr(self.queue, stop)(model.id))
        worker.jobs = interleaved  # type: ignore[assignment]
        if action == "fail":
            self.run(worker.fail(model.id, token, "boom"))
        elif action == "defer":
            self.run(worker.defer(model.id, token, "later", delay_s=0))
        else:
            self.run(worker.release(model.id, token, "not here"))
        self.run(interleaved.run_action())
        self.stale_tokens.append((model.id, token))
        model.token = None
        final = model.attempts_left == 0 and action == "fail"  # ends error, stop or not
        outcome = {"fail": ("failed_job", State.FAILED), "defer": ("defer_job", State.DEFERRED),
                   "release": ("release_job", State.PENDING)}[action]
        stopped = State.KILLED if stop == "kill" else State.REMOVED
        doc = self.run(self.queue.jobs.get(model.id))
        names = [e["name"] for e in self.run(self.queue.events(model.id))]
        tail = names[len(model.events):]
        if final:
            assert isinstance(interleaved.error, TransitionRefused) or \
                interleaved.error is None, interleaved.error
            assert doc["state"] == State.ERROR
            # event ids are taken before the writes: the worker's may sort first
            assert sorted(tail) in (["failed_job"], sorted([f"request_{stop}_job",
                                                            "failed_job"])), tail
            model.state = State.ERROR
        else:
            assert interleaved.error is None, interleaved.error
            assert doc["state"] == stopped, (doc["state"], tail)
            assert tail in ([outcome[0], f"{stop}_job"],
                            [f"request_{stop}_job", f"{stop}_job"]), tail
            if tail[0] == outcome[0] and action in ("defer", "release"):
                model.attempts_left += 1  # requeued first: the attempt was given back
            model.state = stopped
        model.events += tail

    @precondition(lambda self: self.stale_tokens)
    @rule(data=st.data())
    def stale_write_is_fenced(self, data: st.DataObject) -> None:
        job_id, token = data.draw(st.sampled_from(self.stale_tokens))
        with pytest.raises(LeaseLost):
            self.run(self.queue.complete(job_id, token))

    # invariants -------------------------------------------------------------------
    @invariant()
    def database_matches_model(self) -> None:
        if not self.jobs:
            return
        self.run(self._check())

    @invariant()
    def no_job_is_stuck(self) -> None:
        """Every job in sys.queue is one somebody will move on: a waiting job has no
        kill or removal pending, and no final job stays behind."""
        stuck = self.run(self.store.collection(layout.QUEUE).count_documents(
            {"$or": [{"state": {"$in": [str(s) for s in WAITING]},
                      "$or": [{"killed_at": {"$ne": None}}, {"removed_at": {"$ne": None}}]},
                     {"state": {"$in": [str(s) for s in FINAL]}}]}))
        assert stuck == 0

    async def _check(self) -> None:
        queue_docs = {d["_id"]: d async for d in self.store.collection(layout.QUEUE).find()}
        journal_docs = {d["_id"]: d async for d in self.store.collection(layout.JOURNAL).find()}
        events: dict[ObjectId, list[dict]] = {}
        all_ids = []
        async for event in self.store.collection(layout.EVENT).find().sort("_id", 1):
            events.setdefault(event["data"]["_id"], []).append(event)
            all_ids.append(event["_id"])
        assert len(all_ids) == len(set(all_ids))
        for job_id, model in self.jobs.items():
            in_queue, in_journal = job_id in queue_docs, job_id in journal_docs
            assert in_queue != in_journal, f"job in queue={in_queue} journal={in_journal}"
            doc = queue_docs.get(job_id) or journal_docs[job_id]
            assert in_journal == (model.state in FINAL)
            assert doc["state"] == model.state
            assert doc["held"] == model.held
            assert 0 <= doc["attempts_left"] <= doc["attempts"]
            assert doc["attempts_left"] == model.attempts_left
            assert not doc.get("outbox")
            assert [e["name"] for e in events.get(job_id, [])] == model.events
            # the event inserted last carries the job's state (by _id a kill request
            # whose id was taken after the worker's may sort after the final event)
            latest = max(events[job_id], key=lambda e: e["seq"])
            assert latest["data"]["state"] == model.state or \
                model.events[-1] in ("restart_stopped",)


# 60 random programs of up to 40 steps in all, run as parts of 15 that pytest-xdist can
# spread over its workers (one part of 60 was the suite's longest test, its last minutes
# run by one worker alone); each part draws its own programs.
PARTS = 4
EXAMPLES = 60


@pytest.mark.parametrize("part", range(PARTS))
def test_queue_state_machine(mongo_server_url: str, part: int) -> None:
    QueueMachine.server_url = mongo_server_url
    run_state_machine_as_test(QueueMachine, settings=settings(
        max_examples=EXAMPLES // PARTS, stateful_step_count=40, deadline=None,
        suppress_health_check=list(HealthCheck)))
