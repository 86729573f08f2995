"""The web dashboard: pages rendered with Jinja2 (autoescaping on) around one
JavaScript file that reads the JSON API and the event websocket with the user's
cookie, so every number and name shown passes the same permission checks as the API.

Pages need a login (else they redirect to /login). Every page carries the
Content-Security-Policy below (no inline script or style) and the ``_xsrf`` token
that the API demands, as the ``X-XSRFToken`` header, on writes authenticated by the
cookie (`monq.api.base.BaseHandler.prepare`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import jinja2
import tornado.escape
import tornado.web

from monq import __version__
from monq.api.base import ApiContext, BaseHandler
from monq.core.auth.permissions import may_call
from monq.core.errors import AuthenticationFailed, Error

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# (path, title, the API handler whose permission shows the page in the navigation)
NAVIGATION: tuple[tuple[str, str, str | None], ...] = (
    ("/", "Overview", None),
    ("/jobs", "Jobs", "monq.api.jobs"),
    ("/enqueue", "Enqueue", "monq.api.jobtypes"),
    ("/workers", "Workers", "monq.api.workers"),
    ("/schedules", "Schedules", "monq.api.schedules"),
    ("/notifications", "Notifications", "monq.api.notifications"),
    ("/users", "Users and roles", "monq.api.roles"),
)


def make_templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def content_security_policy(host: str, secure: bool) -> str:
    ws = f"{'wss' if secure else 'ws'}://{host}"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {ws}; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")


class PageHandler(BaseHandler):
    """A dashboard page: HTML, login required (a redirect to /login otherwise)."""

    template: ClassVar[str] = ""
    title: ClassVar[str] = ""
    page: ClassVar[str] = ""

    def initialize(self, ctx: ApiContext, templates: jinja2.Environment | None = None
                   ) -> None:
        super().initialize(ctx)
        assert templates is not None
        self.templates = templates

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Content-Security-Policy", content_security_policy(
            self.request.host, self.request.protocol == "https"))

    def _parse_query(self) -> dict[str, Any]:
        return {}  # filters in the address are read by the page's script

    def page_context(self, **extra: Any) -> dict[str, Any]:
        principal = self.principal
        nav = [(path, title) for path, title, permission in NAVIGATION
               if principal is not None and (permission is None
                                             or may_call(principal, permission))]
        return {"title": self.title, "page": self.page, "nav": nav, "user": principal,
                "xsrf": self.xsrf_token.decode(), "version": __version__,
                "current": self.request.path, **extra}

    def show(self, **extra: Any) -> None:
        html = self.templates.get_template(self.template).render(self.page_context(**extra))
        self.finish(html)

    async def get(self, **path: str) -> None:
        self.show(**path)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AuthenticationFailed):
            self.clear()
            self.redirect("/login?next=" + tornado.escape.url_escape(self.request.uri or "/"))
            return
        message = exc.message if isinstance(exc, Error) else self._reason
        if isinstance(exc, Error):
            status_code = exc.status
        self.set_status(status_code)
        html = self.templates.get_template("error.html").render(
            title="Error", page="error", nav=[], user=self.principal, xsrf="",
            version=__version__, current=self.request.path, code=status_code,
            message=message)
        self.finish(html)


class LoginPage(PageHandler):
    public = True
    template = "login.html"
    title = "Log in"
    page = "login"


class OverviewPage(PageHandler):
    template = "overview.html"
    title = "Overview"
    page = "overview"


class JobsPage(PageHandler):
    permission = "monq.api.jobs"
    template = "jobs.html"
    title = "Jobs"
    page = "jobs"


class JobPage(PageHandler):
    permission = "monq.api.jobs"
    template = "job.html"
    title = "Job"
    page = "job"


class EnqueuePage(PageHandler):
    permission = "monq.api.jobtypes"
    template = "enqueue.html"
    title = "Enqueue"
    page = "enqueue"


class WorkersPage(PageHandler):
    permission = "monq.api.workers"
    template = "workers.html"
    title = "Workers"
    page = "workers"


class SchedulesPage(PageHandler):
    permission = "monq.api.schedules"
    template = "schedules.html"
    title = "Schedules"
    page = "schedules"


class NotificationsPage(PageHandler):
    permission = "monq.api.notifications"
    template = "notifications.html"
    title = "Notifications"
    page = "notifications"


class UsersPage(PageHandler):
    permission = "monq.api.roles"
    template = "users.html"
    title = "Users and roles"
    page = "users"


PAGES: list[tuple[str, type[PageHandler]]] = [
    ("/", OverviewPage),
    ("/login", LoginPage),
    ("/jobs", JobsPage),
    (r"/jobs/(?P<job_id>[0-9a-f]{24}|[0-9]+)", JobPage),
    ("/enqueue", EnqueuePage),
    ("/workers", WorkersPage),
    ("/schedules", SchedulesPage),
    ("/notifications", NotificationsPage),
    ("/users", UsersPage),
]


def routes(ctx: ApiContext) -> list[Any]:
    templates = make_templates()
    handlers: list[Any] = [(pattern, handler, {"ctx": ctx, "templates": templates})
                           for pattern, handler in PAGES]
    handlers.append((r"/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC)}))
    return handlers
