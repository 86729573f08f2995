"""Job states, the events that move a job between them, and the one table of
allowed transitions.

::

    enqueue_job --> pending --request_start_job--> running --complete_job--> complete
                      ^                              |  failed_job --> failed (retry later)
                      |  release_job, reset_job      |             or  error (no attempts)
                      +------------------------------+  defer_job --> deferred
                      |                              |             or  inactive (defer_max)
      restart_waiting (any waiting state)            |  kill_job --> killed
                                                     +  remove_job --> removed

pending, deferred and failed are *waiting* states: a worker may claim the job
once its ``query_at`` has passed and it is not held. complete, error,
inactive, killed and removed are *final*: the job moves to sys.journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DEFERRED = "deferred"
    FAILED = "failed"
    COMPLETE = "complete"
    ERROR = "error"
    INACTIVE = "inactive"
    KILLED = "killed"
    REMOVED = "removed"


WAITING: frozenset[State] = frozenset({State.PENDING, State.DEFERRED, State.FAILED})
FINAL: frozenset[State] = frozenset(
    {State.COMPLETE, State.ERROR, State.INACTIVE, State.KILLED, State.REMOVED})
STOPPED: frozenset[State] = frozenset({State.ERROR, State.INACTIVE, State.KILLED})


class EventName(StrEnum):
    ENQUEUE_JOB = "enqueue_job"
    REQUEST_START_JOB = "request_start_job"
    RELEASE_JOB = "release_job"
    START_JOB = "start_job"
    PROGRESS_JOB = "progress_job"
    COMPLETE_JOB = "complete_job"
    DEFER_JOB = "defer_job"
    FAILED_START = "failed_start"
    FAILED_JOB = "failed_job"
    INACTIVATE_JOB = "inactivate_job"
    REQUEST_KILL_JOB = "request_kill_job"
    KILL_JOB = "kill_job"
    REQUEST_REMOVE_JOB = "request_remove_job"
    REMOVE_JOB = "remove_job"
    HOLD_JOB = "hold_job"
    RESUME_JOB = "resume_job"
    FLAG_NONSTOP = "flag_nonstop"
    FLAG_ZOMBIE = "flag_zombie"
    RESET_JOB = "reset_job"
    RESTART_WAITING = "restart_waiting"
    RESTART_STOPPED = "restart_stopped"


class Action(StrEnum):
    """Who does what to a job: each action is one conditional write (`TRANSITIONS`)."""

    # a user's (or the scheduler's, or a job's) actions
    HOLD = "hold"
    RESUME = "resume"
    KILL_WAITING = "kill_waiting"
    REQUEST_KILL = "request_kill"
    REMOVE_WAITING = "remove_waiting"
    REQUEST_REMOVE = "request_remove"
    RESTART_WAITING = "restart_waiting"
    RESTART_STOPPED = "restart_stopped"
    # a worker's actions, on a job it holds the lease of
    CLAIM = "claim"
    START = "start"
    PROGRESS = "progress"
    COMPLETE = "complete"
    RETRY = "retry"
    FAIL = "fail"
    RETRY_START = "retry_start"
    FAIL_START = "fail_start"
    DEFER = "defer"
    INACTIVATE = "inactivate"
    RELEASE = "release"
    MARK_KILLED = "mark_killed"
    MARK_REMOVED = "mark_removed"
    FLAG_NONSTOP = "flag_nonstop"
    # finishing and the sweep
    FAIL_DEPENDENT = "fail_dependent"
    FLAG_ZOMBIE = "flag_zombie"
    RESET = "reset"
    RESET_TO_ERROR = "reset_to_error"


# What a worker's write that puts its job back to waiting requires: a kill or removal
# asked for meanwhile makes it miss, and the job ends killed or removed instead (a job
# left waiting with ``killed_at`` set would be claimed by no one).
NOT_STOPPED: dict[str, None] = {"killed_at": None, "removed_at": None}


@dataclass(frozen=True)
class Transition:
    """One action: the event it writes, the states the job may be in for it, the state
    it lands in (None: the state stays, only flags or progress change), the field
    values it requires besides, and whether the writer must hold the job's lease."""

    action: Action
    event: EventName
    sources: frozenset[State]
    target: State | None
    requires: Mapping[str, Any] = field(default_factory=dict)
    leased: bool = False

    def event_state(self, current: State | str | None = None) -> State | str:
        """The state the event names: the target, else the one source, else `current`."""
        if self.target is not None:
            return self.target
        if len(self.sources) == 1:
            return next(iter(self.sources))
        if current is None:
            raise ValueError(f"{self.action}: the job's current state is needed")
        return current


_R = frozenset({State.RUNNING})
_A, _E = Action, EventName


def _t(action: Action, event: EventName, sources: frozenset[State], target: State | None,
       requires: Mapping[str, Any] | None = None, *, leased: bool = False) -> Transition:
    return Transition(action, event, sources, target, dict(requires or {}), leased)


TRANSITIONS: dict[Action, Transition] = {t.action: t for t in (
    _t(_A.HOLD, _E.HOLD_JOB, WAITING, None, {"held": False}),
    _t(_A.RESUME, _E.RESUME_JOB, WAITING, None, {"held": True}),
    _t(_A.KILL_WAITING, _E.KILL_JOB, WAITING, State.KILLED),
    _t(_A.REQUEST_KILL, _E.REQUEST_KILL_JOB, _R, None, {"killed_at": None}),
    _t(_A.REMOVE_WAITING, _E.REMOVE_JOB, WAITING, State.REMOVED),
    _t(_A.REQUEST_REMOVE, _E.REQUEST_REMOVE_JOB, _R, None, {"removed_at": None}),
    _t(_A.RESTART_WAITING, _E.RESTART_WAITING, WAITING, State.PENDING),
    # the stopped job stays as it is in the journal; a new job takes its place
    _t(_A.RESTART_STOPPED, _E.RESTART_STOPPED, STOPPED, None, {"child_id": None}),
    _t(_A.CLAIM, _E.REQUEST_START_JOB, WAITING, State.RUNNING,
       {"held": False, "blocked": False, **NOT_STOPPED}),
    _t(_A.START, _E.START_JOB, _R, None, leased=True),
    _t(_A.PROGRESS, _E.PROGRESS_JOB, _R, None, leased=True),
    _t(_A.COMPLETE, _E.COMPLETE_JOB, _R, State.COMPLETE, leased=True),
    _t(_A.RETRY, _E.FAILED_JOB, _R, State.FAILED, NOT_STOPPED, leased=True),
    _t(_A.FAIL, _E.FAILED_JOB, _R, State.ERROR, leased=True),
    _t(_A.RETRY_START, _E.FAILED_START, _R, State.FAILED, NOT_STOPPED, leased=True),
    _t(_A.FAIL_START, _E.FAILED_START, _R, State.ERROR, leased=True),
    _t(_A.DEFER, _E.DEFER_JOB, _R, State.DEFERRED, NOT_STOPPED, leased=True),
    _t(_A.INACTIVATE, _E.INACTIVATE_JOB, _R, State.INACTIVE, leased=True),
    _t(_A.RELEASE, _E.RELEASE_JOB, _R, State.PENDING, NOT_STOPPED, leased=True),
    _t(_A.MARK_KILLED, _E.KILL_JOB, _R, State.KILLED, leased=True),
    _t(_A.MARK_REMOVED, _E.REMOVE_JOB, _R, State.REMOVED, leased=True),
    _t(_A.FLAG_NONSTOP, _E.FLAG_NONSTOP, _R, None, {"wall_at": None}),
    _t(_A.FAIL_DEPENDENT, _E.FAILED_JOB, WAITING, State.ERROR),
    _t(_A.FLAG_ZOMBIE, _E.FLAG_ZOMBIE, _R, None, {"zombie_at": None}, leased=True),
    # a kill or removal asked for meanwhile makes the reset miss: the next sweep ends
    # the job instead (see NOT_STOPPED)
    _t(_A.RESET, _E.RESET_JOB, _R, State.PENDING, NOT_STOPPED, leased=True),
    _t(_A.RESET_TO_ERROR, _E.RESET_JOB, _R, State.ERROR, leased=True),
)}
