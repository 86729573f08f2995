"""The Tornado application: the route table of /api/v1 and its context."""

from __future__ import annotations

from typing import Any

import tornado.web

from monq.api import (
    auth,
    core4,
    dashboard,
    events,
    history,
    jobs,
    meta,
    metrics,
    notifications,
    roles,
    schedules,
)
from monq.api.base import ApiContext, BaseHandler, NotFoundHandler, access_log
from monq.api.instruments import Instruments
from monq.api.stream import EventHub
from monq.core.auth.accounts import Accounts
from monq.core.auth.tokens import Tokens, load_secret
from monq.core.config import Config
from monq.core.store import Store

PREFIX = "/api/v1"

ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (PREFIX + "/login", auth.LoginHandler),
    (PREFIX + "/logout", auth.LogoutHandler),
    (PREFIX + "/profile", auth.ProfileHandler),
    (PREFIX + "/roles", roles.RolesHandler),
    (PREFIX + r"/roles/(?P<record_id>[^/]+)", roles.RoleHandler),
    (PREFIX + "/jobs/history", history.JobHistoryHandler),
    (PREFIX + "/queue/history", history.QueueHistoryHandler),
    (PREFIX + "/jobs", jobs.JobsHandler),
    (PREFIX + r"/jobs/(?P<job_id>[^/]+)", jobs.JobHandler),
    (PREFIX + r"/jobs/(?P<job_id>[^/]+)/log", jobs.JobLogHandler),
    (PREFIX + r"/jobs/(?P<job_id>[^/]+)/events", jobs.JobEventsHandler),
    (PREFIX + r"/jobs/(?P<job_id>[^/]+)/(?P<action>kill|remove|restart|hold|resume)",
     jobs.JobActionHandler),
    (PREFIX + "/jobtypes", jobs.JobTypesHandler),
    (PREFIX + "/workers", jobs.WorkersHandler),
    (PREFIX + "/maintenance", jobs.MaintenanceHandler),
    (PREFIX + "/event", events.EventSocketHandler),
    (PREFIX + "/event/history", events.EventHistoryHandler),
    (PREFIX + "/schedules", schedules.SchedulesHandler),
    (PREFIX + r"/schedules/(?P<schedule_id>[^/]+)", schedules.ScheduleHandler),
    (PREFIX + "/notifications", notifications.NotificationsHandler),
    (PREFIX + r"/notifications/(?P<delivery_id>[^/]+)", notifications.NotificationHandler),
    (PREFIX + r"/notifications/(?P<delivery_id>[^/]+)/resend",
     notifications.NotificationResendHandler),
    (PREFIX + "/health", meta.HealthHandler),
    (PREFIX + "/metrics", metrics.MetricsHandler),
    (PREFIX + "/openapi.json", meta.OpenApiHandler),
]

# Where clients expect a route by convention, served by the same handler with the
# same checks (and left out of openapi.json, which lists each operation once): core4
# clients log in at /api/login (their /core4/api/login), Prometheus scrapes /metrics.
ALIASES: list[tuple[str, type[BaseHandler]]] = [
    ("/api/login", auth.LoginHandler),
    ("/metrics", metrics.MetricsHandler),
    (PREFIX + "/enqueue", core4.Core4EnqueueHandler),
    (PREFIX + r"/jobs/(?P<action>kill|remove|restart)/(?P<job_id>[0-9a-f]{24}|[0-9]+)",
     core4.Core4JobActionHandler),
]


def make_context(config: Config, store: Store, hub_store: Store | None = None) -> ApiContext:
    """The handlers' context; the event hub reads events through `hub_store` when
    given (a client without the requests' time budget), else through `store`."""
    accounts = Accounts(store, config)
    hub = EventHub(hub_store or store, accounts, config)
    return ApiContext(config=config, store=store, accounts=accounts,
                      tokens=Tokens(load_secret(config), config.api.token_expiry_s),
                      hub=hub, metrics=Instruments(config, hub))


def make_app(ctx: ApiContext) -> tornado.web.Application:
    handlers: list[Any] = []
    # the core4 action form (/jobs/kill/<id>) before /jobs/<id>/<...> can claim it
    for pattern, handler in ALIASES + ROUTES:
        kwargs: dict[str, Any] = {"ctx": ctx}
        if handler is meta.OpenApiHandler:
            kwargs["routes"] = ROUTES
        handlers.append((pattern, handler, kwargs))
    handlers += dashboard.routes(ctx)
    return tornado.web.Application(
        handlers, default_handler_class=NotFoundHandler, default_handler_args={"ctx": ctx},
        log_function=access_log, xheaders=False, compress_response=True,
        xsrf_cookie_kwargs={"samesite": "Strict", "path": "/",
                            "secure": ctx.config.api.public_url.startswith("https://")})
