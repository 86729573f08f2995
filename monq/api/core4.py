"""core4's forms of the job routes, for core4 clients that manage jobs: ``POST
/enqueue?name=<job>`` with the arguments as the JSON body, and ``PUT
/jobs/<action>/<id>`` for kill, remove and restart. Each is the monq handler it
stands for, with the same checks (permission, job access, body limits) and the same
replies; only the request's shape differs. Not listed in openapi.json."""

from __future__ import annotations

from typing import Any

from monq.api.jobs import JobActionHandler, JobsHandler

CORE4_ACTIONS = ("kill", "remove", "restart")


class Core4EnqueueHandler(JobsHandler):
    """``POST /enqueue?name=<job>``, body: the job's arguments (core4's enqueue)."""

    summary = "enqueue a job, core4's way: the name in the query, the arguments as body"
    query = {"POST": {"name": str}}
    required = {"POST": ("name",)}
    bodies = {"POST": {"type": "object"}}

    SUPPORTED_METHODS = ("POST",)  # GET would be monq's listing under another name

    def body(self) -> dict[str, Any]:
        return {"name": self.args["name"], "args": super().body()}


class Core4JobActionHandler(JobActionHandler):
    """``PUT /jobs/<kill|remove|restart>/<id>`` (core4's job actions)."""

    async def put(self, action: str, job_id: str) -> None:
        await self.post(job_id, action)
