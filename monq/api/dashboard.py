"""The web dashboard: pages rendered with Jinja2 (autoescaping on) around one
JavaScript file that reads the JSON API and the event websocket with the user's
cookie, so every number and name shown passes the same permission checks as the API.

Pages need a login (else they redirect to /login). Every page carries the
Content-Security-Policy below (no inline script or style) and the ``_xsrf`` token
that the API demands, as the ``X-XSRFToken`` header, on writes authenticated by the
cookie (`monq.api.base.BaseHandler.prepare`).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    ("/schedules", "Schedules", None),  # the API shows each user the schedules they may read
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


_SAFE_PATH = re.compile(r"^/(?![/\\])[\x21-\x7e]*\Z")


def safe_next(target: str) -> str:
    """`target` if it is a path on this site, else ``/``: no scheme, no authority,
    no backslash (browsers read ``/\\host`` as ``//host``), no whitespace or control
    characters (they drop tabs and newlines, so ``/\\t/host`` becomes ``//host``)."""
    if not _SAFE_PATH.match(target) or "\\" in target:
        return "/"
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


@dataclass(frozen=True)
class Page:
    """One dashboard page: its template, title, and the API permission it needs
    (None: any logged-in user)."""

    template: str
    title: str
    permission: str | None = None
    public: bool = False

    @property
    def name(self) -> str:
        return self.template.removesuffix(".html")


class PageHandler(BaseHandler):
    """A dashboard page: HTML, login required (a redirect to /login otherwise)."""

    def initialize(self, ctx: ApiContext, templates: jinja2.Environment | None = None,
                   page: Page | None = None) -> None:
        super().initialize(ctx)
        assert templates is not None and page is not None
        self.templates = templates
        self.page = page
        # what BaseHandler.prepare checks, per page instead of per class
        self.permission = page.permission  # type: ignore[misc]
        self.public = page.public  # type: ignore[misc]

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

    def _render(self, template: str, **values: Any) -> None:
        principal = self.principal
        nav = [(path, title) for path, title, permission in NAVIGATION
               if principal is not None and (permission is None
                                             or may_call(principal, permission))]
        self.finish(self.templates.get_template(template).render(
            title=self.page.title, page=self.page.name, nav=nav, user=principal,
            version=__version__, current=self.request.path, **values))

    async def get(self, **path: str) -> None:
        extra = {}
        if self.page.public:  # the login page: where to go afterwards, same site only
            extra["next"] = safe_next(self.get_query_argument("next", "/"))
        self._render(self.page.template, xsrf=self.xsrf_token.decode(), **extra, **path)

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
        self._render("error.html", xsrf="", code=status_code, message=message)


PAGES: list[tuple[str, Page]] = [
    ("/", Page("overview.html", "Overview")),
    ("/login", Page("login.html", "Log in", public=True)),
    ("/jobs", Page("jobs.html", "Jobs", "monq.api.jobs")),
    (r"/jobs/(?P<job_id>[0-9a-f]{24}|[0-9]+)", Page("job.html", "Job", "monq.api.jobs")),
    ("/enqueue", Page("enqueue.html", "Enqueue", "monq.api.jobtypes")),
    ("/workers", Page("workers.html", "Workers", "monq.api.workers")),
    ("/schedules", Page("schedules.html", "Schedules")),
    ("/notifications", Page("notifications.html", "Notifications", "monq.api.notifications")),
    ("/users", Page("users.html", "Users and roles", "monq.api.roles")),
]


def routes(ctx: ApiContext) -> list[Any]:
    templates = make_templates()
    handlers: list[Any] = [(pattern, PageHandler, {"ctx": ctx, "templates": templates,
                                                   "page": page})
                           for pattern, page in PAGES]
    handlers.append((r"/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC)}))
    return handlers
