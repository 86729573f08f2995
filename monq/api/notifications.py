"""Notification deliveries over HTTP: GET /notifications (paginated, filtered by state
and job), GET /notifications/{id}, POST /notifications/{id}/resend.

A user sees only deliveries of jobs they may read (``job://<name>/r``); others are
a 404, as for jobs. Resending needs ``job://<name>/x``.
"""

from __future__ import annotations

from monq.api.bodies import NO_BODY
from monq.api.jobs import JobsBase
from monq.core.auth.permissions import may_execute_job, may_read_job
from monq.core.errors import BadRequest, NotFound, PermissionDenied
from monq.notify.deliveries import Delivery, Notifications


class NotificationsBase(JobsBase):
    permission = "monq.api.notifications"

    def notifications(self) -> Notifications:
        return Notifications(self.ctx.store)

    async def visible(self, delivery_id: str) -> Delivery:
        assert self.principal is not None
        try:
            delivery = await self.notifications().get(delivery_id)
        except BadRequest:
            raise NotFound(f"no notification {delivery_id}") from None
        if not may_read_job(self.principal, delivery.job_name):
            raise NotFound(f"no notification {delivery_id}")
        return delivery


class NotificationsHandler(NotificationsBase):
    """Deliveries, newest first; ``state`` (pending, delivered, failed, comma-separated)
    and ``job`` (id or number) filter them."""

    summary = "notification deliveries (paginated; filter by state and job)"
    query = {"GET": {"page": int, "per_page": int, "state": str, "job": str}}

    async def get(self) -> None:
        assert self.principal is not None
        page, per_page = self.page_args()
        states = tuple(s for s in (self.args.get("state") or "").split(",") if s)
        job_id = None
        if "job" in self.args:
            job_id = (await self.visible_job(self.args["job"])).id
        notifications = self.notifications()
        names = None
        if not self.principal.is_admin:
            names = [n for n in await notifications.job_names()
                     if may_read_job(self.principal, n)]
        deliveries, total = await notifications.page(
            states=states, job_id=job_id, names=names, skip=page * per_page, limit=per_page)
        self.reply_page([d.to_public() for d in deliveries], total, page, per_page)


class NotificationHandler(NotificationsBase):
    summary = "one notification delivery"

    async def get(self, delivery_id: str) -> None:
        self.reply((await self.visible(delivery_id)).to_public())


class NotificationResendHandler(NotificationsBase):
    """Send a delivery again now, whatever its state (needs ``job://<name>/x``)."""

    summary = "send a notification again"
    bodies = {"POST": NO_BODY}

    async def post(self, delivery_id: str) -> None:
        assert self.principal is not None
        delivery = await self.visible(delivery_id)
        if not may_execute_job(self.principal, delivery.job_name):
            raise PermissionDenied(f"permission denied: job://{delivery.job_name}/x")
        self.reply((await self.notifications().resend(delivery.id)).to_public())

