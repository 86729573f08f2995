"""The names core4 gave the handlers monq answers for, so that a core4 user's
``api://core4.api.v1.request...`` permissions grant the same routes in monq.

core4 names a handler permission by its qualified class name (for example
``api://core4.api.v1.request.queue.history.*`` grants ``JobHistoryHandler`` and
``QueueHistoryHandler``); monq names them ``monq.api...``. A permission may name
either."""

from __future__ import annotations

_HISTORY = "core4.api.v1.request.queue.history."
CORE4_HANDLERS: dict[str, str | tuple[str, ...]] = {
    # /jobs/history and /queue/history share monq's permission
    "monq.api.jobs.history": (_HISTORY + "JobHistoryHandler", _HISTORY + "QueueHistoryHandler"),
    "monq.api.jobs": "core4.api.v1.request.queue.job.JobHandler",
    "monq.api.jobs.action": "core4.api.v1.request.queue.job.JobHandler",
    "monq.api.jobs.log": "core4.api.v1.request.queue.job.JobHandler",
    "monq.api.roles": "core4.api.v1.request.role.main.RoleHandler",
    "monq.api.events.stream": "core4.api.v1.request.standard.event.EventHandler",
    "monq.api.events.history": "core4.api.v1.request.standard.event.EventHistoryHandler",
    "monq.api.auth.profile": "core4.api.v1.request.standard.profile.ProfileHandler",
}


def handler_names(handler: str) -> tuple[str, ...]:
    """The names a permission may give the handler `handler`: monq's, and core4's."""
    core4 = CORE4_HANDLERS.get(handler, ())
    return (handler, core4) if isinstance(core4, str) else (handler, *core4)
