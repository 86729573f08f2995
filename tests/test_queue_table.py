"""The transition table drives every write: each action of `TRANSITIONS` is reachable
through the public API and lands in its target (its event names it), and its write
from a state that is not one of its sources changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from monq.core.errors import LeaseLost, TransitionRefused
from monq.core.store import Store, layout
from monq.queue.queue import Queue
from monq.queue.states import FINAL, TRANSITIONS, Action, State
from tests.queue_fixtures import DUMMY, WORKER

Driver = Callable[[Queue, Store], Awaitable[ObjectId]]


async def claimed(queue: Queue, **options: Any) -> tuple[ObjectId, str]:
    job = await queue.enqueue(DUMMY, **options)
    claim = await queue.claim(WORKER)
    assert claim is not None and claim.job.id == job.id
    return job.id, claim.token


async def expire_lease(store: Store, job_id: ObjectId) -> None:
    await store.collection(layout.QUEUE).update_one(
        {"_id": job_id}, {"$set": {"locked.expires": datetime.now(UTC) - timedelta(seconds=1)}})


async def hold(q: Queue, s: Store) -> ObjectId:
    return (await q.hold((await q.enqueue(DUMMY)).id)).id


async def resume(q: Queue, s: Store) -> ObjectId:
    return (await q.resume((await q.enqueue(DUMMY, hold=True)).id)).id


async def kill_waiting(q: Queue, s: Store) -> ObjectId:
    return (await q.kill((await q.enqueue(DUMMY)).id)).id


async def request_kill(q: Queue, s: Store) -> ObjectId:
    job_id, _ = await claimed(q)
    return (await q.kill(job_id)).id


async def remove_waiting(q: Queue, s: Store) -> ObjectId:
    return (await q.remove((await q.enqueue(DUMMY)).id)).id


async def request_remove(q: Queue, s: Store) -> ObjectId:
    job_id, _ = await claimed(q)
    return (await q.remove(job_id)).id


async def restart_waiting(q: Queue, s: Store) -> ObjectId:
    return (await q.restart((await q.enqueue(DUMMY, hold=True)).id)).id


async def restart_stopped(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q, attempts=1)
    await q.fail(job_id, token, "boom")
    child = await q.restart(job_id)
    assert child.parent_id == job_id
    return job_id


async def claim(q: Queue, s: Store) -> ObjectId:
    return (await claimed(q))[0]


async def start(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q)
    return (await q.start(job_id, token)).id


async def progress(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q)
    await q.progress(job_id, token, 0.5)
    return job_id


async def complete(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q)
    return (await q.complete(job_id, token)).id


async def retry(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q, attempts=2)
    return (await q.fail(job_id, token, "boom")).id


async def fail(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q, attempts=1)
    return (await q.fail(job_id, token, "boom")).id


async def retry_start(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q, attempts=2)
    return (await q.fail_start(job_id, token, "no such module")).id


async def fail_start(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q, attempts=1)
    return (await q.fail_start(job_id, token, "no such module")).id


async def defer(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q)
    return (await q.defer(job_id, token, "later", delay_s=60)).id


async def inactivate(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q, defer_max=0)
    return (await q.defer(job_id, token, "later")).id


async def release(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q)
    return (await q.release(job_id, token, "not here")).id


async def mark_killed(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q)
    await q.kill(job_id)
    return (await q.mark_killed(job_id, token)).id


async def mark_removed(q: Queue, s: Store) -> ObjectId:
    job_id, token = await claimed(q)
    await q.remove(job_id)
    return (await q.mark_removed(job_id, token)).id


async def flag_nonstop(q: Queue, s: Store) -> ObjectId:
    job_id, _ = await claimed(q)
    flagged = await q.flag_nonstop(job_id)
    assert flagged is not None
    return flagged.id


async def fail_dependent(q: Queue, s: Store) -> ObjectId:
    first = await q.enqueue(DUMMY, hold=True)
    dependent = await q.enqueue(DUMMY, wait_for=[first.id])
    await q.kill(first.id)
    return dependent.id


async def flag_zombie(q: Queue, s: Store) -> ObjectId:
    job_id, _ = await claimed(q)
    await expire_lease(s, job_id)
    await q.sweep()  # flags it, then puts it back
    return job_id


async def reset(q: Queue, s: Store) -> ObjectId:
    return await flag_zombie(q, s)


async def reset_to_error(q: Queue, s: Store) -> ObjectId:
    spent = Queue(s, q.config.with_values(queue={"max_recoveries": 0}), author="tester")
    job_id, _ = await claimed(spent)
    await expire_lease(s, job_id)
    await spent.sweep()
    return job_id


DRIVERS: dict[Action, Driver] = {
    Action.HOLD: hold, Action.RESUME: resume, Action.KILL_WAITING: kill_waiting,
    Action.REQUEST_KILL: request_kill, Action.REMOVE_WAITING: remove_waiting,
    Action.REQUEST_REMOVE: request_remove, Action.RESTART_WAITING: restart_waiting,
    Action.RESTART_STOPPED: restart_stopped, Action.CLAIM: claim, Action.START: start,
    Action.PROGRESS: progress, Action.COMPLETE: complete, Action.RETRY: retry,
    Action.FAIL: fail, Action.RETRY_START: retry_start, Action.FAIL_START: fail_start,
    Action.DEFER: defer, Action.INACTIVATE: inactivate, Action.RELEASE: release,
    Action.MARK_KILLED: mark_killed, Action.MARK_REMOVED: mark_removed,
    Action.FLAG_NONSTOP: flag_nonstop, Action.FAIL_DEPENDENT: fail_dependent,
    Action.FLAG_ZOMBIE: flag_zombie, Action.RESET: reset,
    Action.RESET_TO_ERROR: reset_to_error,
}


def test_every_action_has_a_driver() -> None:
    assert set(DRIVERS) == set(TRANSITIONS)


@pytest.mark.parametrize("action", list(TRANSITIONS), ids=str)
async def test_each_action_is_reachable_and_lands_in_its_target(
        queue: Queue, store: Store, action: Action) -> None:
    transition = TRANSITIONS[action]
    job_id = await DRIVERS[action](queue, store)
    events = [e for e in await queue.events(job_id) if e["name"] == transition.event]
    assert events, f"{action} wrote no {transition.event}"
    landed = State(events[-1]["data"]["state"])
    if transition.target is not None:
        assert landed == transition.target
    else:
        assert landed in transition.sources  # only flags or progress changed
    names = [e["name"] for e in await queue.events(job_id)]
    if names[-1] == transition.event and transition.target is not None:
        assert (await queue.get(job_id)).state == transition.target


async def in_state(queue: Queue, state: State) -> tuple[ObjectId, str | None]:
    """A job in `state`, reached through the public API, and the token of its last
    claim (None if it was never claimed)."""
    if state == State.PENDING:
        return (await queue.enqueue(DUMMY)).id, None
    if state == State.KILLED:
        return (await queue.kill((await queue.enqueue(DUMMY)).id)).id, None
    if state == State.REMOVED:
        return (await queue.remove((await queue.enqueue(DUMMY)).id)).id, None
    job_id, token = await claimed(queue, attempts=1 if state == State.ERROR else 2,
                                  retry_delay_s=3600, defer_max=0 if state == State.INACTIVE
                                  else None)
    if state == State.DEFERRED:
        await queue.defer(job_id, token, "later", delay_s=3600)
    elif state in (State.FAILED, State.ERROR):
        await queue.fail(job_id, token, "boom")
    elif state == State.COMPLETE:
        await queue.complete(job_id, token)
    elif state == State.INACTIVE:
        await queue.defer(job_id, token, "later")
    assert (await queue.get(job_id)).state == state
    return job_id, token


@pytest.mark.parametrize("state", list(State), ids=str)
async def test_an_action_from_a_state_outside_its_sources_changes_nothing(
        queue: Queue, store: Store, state: State) -> None:
    job_id, token = await in_state(queue, state)
    before = await queue.events(job_id)
    refusing = [a for a, t in TRANSITIONS.items() if state not in t.sources]
    assert refusing
    for action in refusing:
        transition = TRANSITIONS[action]
        event = queue.ctx.event(action, datetime.now(UTC), current=state)
        if action == Action.CLAIM:
            assert await queue.claim(WORKER) is None
        elif action == Action.RESTART_STOPPED:
            assert await queue.jobs.set_restart_child(
                job_id, sources=[str(s) for s in transition.sources],
                requires=transition.requires, child_id=ObjectId(), event=event) is None
        else:
            lease = (token or "no-lease") if transition.leased else None
            assert await queue.ctx.write(action, job_id, event, token=lease) is None, action
        assert await queue.events(job_id) == before, action
        assert (await queue.get(job_id)).state == state, action


@pytest.mark.parametrize("state", sorted(FINAL - {State.ERROR, State.INACTIVE,
                                                  State.KILLED}), ids=str)
async def test_public_user_actions_refuse_what_the_table_refuses(
        queue: Queue, state: State) -> None:
    job_id, token = await in_state(queue, state)
    for act in (queue.hold, queue.resume, queue.kill, queue.remove, queue.restart):
        with pytest.raises(TransitionRefused):
            await act(job_id)
    if token is not None:
        with pytest.raises(LeaseLost):
            await queue.complete(job_id, token)


def test_worker_writes_need_the_lease() -> None:
    leased = {a for a, t in TRANSITIONS.items() if t.leased}
    assert leased >= {Action.START, Action.PROGRESS, Action.COMPLETE, Action.FAIL,
                      Action.DEFER, Action.RELEASE, Action.MARK_KILLED}
    assert all(TRANSITIONS[a].sources == {State.RUNNING} for a in leased)
