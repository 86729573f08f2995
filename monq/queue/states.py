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

from dataclasses import dataclass
from enum import StrEnum


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
QUEUED: frozenset[State] = WAITING | {State.RUNNING}


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


@dataclass(frozen=True)
class Transition:
    """An event: the states a job may be in for it, and the state it leads to
    (None: the state does not change, only flags or progress do)."""

    event: EventName
    sources: frozenset[State]
    target: State | None
    targets: frozenset[State] = frozenset()  # when the outcome depends (retry or error)


def _t(event: EventName, sources: frozenset[State] | set[State], target: State | None,
       *alternatives: State) -> Transition:
    return Transition(event, frozenset(sources), target,
                      frozenset(alternatives) | ({target} if target else set()))


_R = {State.RUNNING}

TRANSITIONS: dict[EventName, Transition] = {t.event: t for t in (
    _t(EventName.REQUEST_START_JOB, WAITING, State.RUNNING),
    _t(EventName.RELEASE_JOB, _R, State.PENDING),
    _t(EventName.START_JOB, _R, None),
    _t(EventName.PROGRESS_JOB, _R, None),
    _t(EventName.COMPLETE_JOB, _R, State.COMPLETE),
    _t(EventName.DEFER_JOB, _R, State.DEFERRED),
    _t(EventName.INACTIVATE_JOB, _R, State.INACTIVE),
    _t(EventName.FAILED_START, _R, State.FAILED, State.ERROR),
    _t(EventName.FAILED_JOB, _R | WAITING, State.FAILED, State.ERROR),
    _t(EventName.REQUEST_KILL_JOB, _R, None),
    _t(EventName.KILL_JOB, WAITING | _R, State.KILLED),
    _t(EventName.REQUEST_REMOVE_JOB, _R, None),
    _t(EventName.REMOVE_JOB, WAITING | _R, State.REMOVED),
    _t(EventName.HOLD_JOB, WAITING, None),
    _t(EventName.RESUME_JOB, WAITING, None),
    _t(EventName.FLAG_NONSTOP, _R, None),
    _t(EventName.FLAG_ZOMBIE, _R, None),
    _t(EventName.RESET_JOB, _R, State.PENDING, State.ERROR),
    _t(EventName.RESTART_WAITING, WAITING, State.PENDING),
    _t(EventName.RESTART_STOPPED, STOPPED, None),
)}


def sources_of(event: EventName) -> frozenset[State]:
    """The states a job may be in for `event`."""
    return TRANSITIONS[event].sources
