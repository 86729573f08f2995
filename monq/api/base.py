"""The base handler every API handler derives from: authentication, authorisation
against the handler's permission name, typed query parameters, JSON bodies, the
reply envelope, and the one mapping of monq errors to HTTP statuses.

A handler declares::

    class RolesHandler(BaseHandler):
        permission = "monq.api.roles"          # api://monq.api.roles grants it
        query = {"GET": {"page": int, "per_page": int, "name": str}}

        async def get(self):
            docs, total = ...
            self.reply_page([...], total)

``self.args`` holds the parsed query parameters; an unknown parameter or a
value of the wrong type is a 400 naming it. ``self.body()`` is the JSON (or
form) body, already checked in `prepare` (after authorisation, before the
handler runs) against the route's closed schema in ``bodies`` and the limits of
`monq.api.bodies`; a write route that declares no body takes none. A body larger
than ``api.max_body_bytes`` is a 413.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import tornado.web
from bson import ObjectId

from monq.api import bodies
from monq.api.stream import EventHub
from monq.core.auth.accounts import Accounts
from monq.core.auth.permissions import JobTypePolicy, Principal, check_job_name, may_call
from monq.core.auth.tokens import Claims, Tokens
from monq.core.config import Config
from monq.core.errors import (
    AuthenticationFailed,
    BadRequest,
    DatabaseUnavailable,
    Error,
    PayloadTooLarge,
    PermissionDenied,
    TooManyRequests,
    ValidationError,
)
from monq.core.ids import object_id
from monq.core.jsonio import dumps
from monq.core.store import Store

if TYPE_CHECKING:
    from monq.api.instruments import Instruments

log = logging.getLogger("monq.api")

COOKIE = "monq_token"
TOKEN_HEADER = "X-Monq-Token"  # noqa: S105 - a header name
MAX_PER_PAGE = 1000
MAX_SKIP = 1_000_000  # deeper pages cost the server more than any reader needs
INT_LIMIT = 2**63  # MongoDB's integers are 64 bits
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2106, 1, 1, tzinfo=UTC)
DEFAULT_PER_PAGE = 25
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
MAX_PARAM_CHARS = 1024
# What every paginated listing's parameters mean, for the OpenAPI document.
PAGE_DOCS = {
    "page": "0-based page number (``skip`` = page x per_page); deep pages cost more: "
            "page on with ``after`` instead",
    "per_page": f"items per page, 1 to {MAX_PER_PAGE} (default {DEFAULT_PER_PAGE})",
}


@dataclass
class ApiContext:
    """What every handler gets through ``initialize``."""

    config: Config
    store: Store
    accounts: Accounts
    tokens: Tokens
    hub: EventHub | None = None
    metrics: Instruments | None = None


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes"):
                return True
            if raw.lower() in ("0", "false", "no"):
                return False
            raise ValueError
        if kind is datetime:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if value.tzinfo is None:
                raise BadRequest(f"parameter {name!r}: give a time zone")
            value = value.astimezone(UTC)
            if not EARLIEST <= value < LATEST:  # what ObjectIds (event times) can hold
                raise BadRequest(f"parameter {name!r}: must be between {EARLIEST.year} "
                                 f"and {LATEST.year - 1}")
            return value
        value = kind(raw)
        if kind is int and not -INT_LIMIT <= value < INT_LIMIT:
            raise BadRequest(f"parameter {name!r}: out of range: {raw!r}")
        return value
    except (ValueError, TypeError):
        label = {int: "an integer", float: "a number", bool: "true or false",
                 datetime: "an ISO 8601 time", str: "a string"}.get(kind, kind.__name__)
        raise BadRequest(f"parameter {name!r}: expected {label}, got {raw!r}") from None


class BaseHandler(tornado.web.RequestHandler):
    permission: ClassVar[str | None] = None  # None: any logged-in user
    public: ClassVar[bool] = False           # True: no login needed
    query: ClassVar[dict[str, dict[str, type]]] = {}
    required: ClassVar[dict[str, tuple[str, ...]]] = {}  # required query parameters
    query_docs: ClassVar[dict[str, str]] = {}  # what a query parameter means (OpenAPI)
    bodies: ClassVar[dict[str, dict[str, Any]]] = {}  # JSON schema of bodies, per method
    summary: ClassVar[str] = ""
    produces: ClassVar[str] = "application/json"  # the media type of a 200 reply

    def initialize(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.request_id = str(ObjectId())
        self.principal: Principal | None = None
        self.claims: Claims | None = None
        self.args: dict[str, Any] = {}
        self._via_cookie = False
        self._body: dict[str, Any] | None = None

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def prepare(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        if len(self.request.body or b"") > self.ctx.config.api.max_body_bytes:
            raise PayloadTooLarge(f"body: larger than {self.ctx.config.api.max_body_bytes} "
                                  f"bytes (api.max_body_bytes)")
        self.args = self._parse_query()
        if not self.public:
            self.principal = await self.authenticate()
            if self._via_cookie and self.request.method not in ("GET", "HEAD", "OPTIONS"):
                # a browser sends the cookie on its own: a write must also prove it
                # comes from our page (the _xsrf token as X-XSRFToken)
                self.check_xsrf_cookie()
            if self.permission and not may_call(self.principal, self.permission,
                                                self.request.method or "GET"):
                raise PermissionDenied(f"permission denied: api://{self.permission}")
        if self.request.method in WRITE_METHODS:
            self._body = self._checked_body()

    # Parameters and bodies ------------------------------------------------------
    def _parse_query(self) -> dict[str, Any]:
        spec = self.query.get(self.request.method or "GET", {})
        args: dict[str, Any] = {}
        for name, values in self.request.query_arguments.items():
            if name == "token":
                continue
            if name not in spec:
                raise BadRequest(f"unknown parameter {name!r}")
            if len(values) != 1:
                raise BadRequest(f"parameter {name!r}: give it once")
            raw = values[0].decode("utf-8", "replace")
            if len(raw) > MAX_PARAM_CHARS:
                raise BadRequest(f"parameter {name!r}: longer than {MAX_PARAM_CHARS} "
                                 f"characters")
            if "$" in raw and spec[name] is str:
                raise BadRequest(f"parameter {name!r}: may not contain '$'")
            args[name] = _parse(name, raw, spec[name])
        for name in self.required.get(self.request.method or "GET", ()):
            if name not in args:
                raise BadRequest(f"parameter {name!r}: required")
        return args

    def _checked_body(self) -> dict[str, Any]:
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("application/x-www-form-urlencoded") or \
                content_type.startswith("multipart/form-data"):
            data: Any = {}
            for key, values in self.request.body_arguments.items():
                if len(values) != 1:
                    raise BadRequest(f"{key}: give it once"[:200])
                try:
                    data[key] = values[0].decode()
                except UnicodeDecodeError:
                    raise BadRequest(f"{key}: not UTF-8 text"[:200]) from None
        elif not self.request.body:
            data = {}
        else:
            data = bodies.parse_json(self.request.body)
        if not isinstance(data, dict):
            raise BadRequest("body: expected a JSON object")
        bodies.check_values(data)
        bodies.validate(self.bodies.get(self.request.method or "POST", bodies.NO_BODY), data)
        return data

    def body(self) -> dict[str, Any]:
        """The checked body of a write (a copy: handlers may pop from it)."""
        if self._body is None:
            self._body = self._checked_body()
        return dict(self._body)

    def job_name(self, name: object, mode: str = "x", field: str = "name") -> str:
        """A job type's name from the client, checked against the deployment's
        ``queue.job_types`` and the user's job permissions before anything imports it."""
        assert self.principal is not None
        return check_job_name(self.principal, name,
                              JobTypePolicy.from_config(self.ctx.config), mode, field)

    def page_args(self) -> tuple[int, int]:
        page = self.args.get("page", 0)
        per_page = self.args.get("per_page", DEFAULT_PER_PAGE)
        if page < 0:
            raise BadRequest("parameter 'page': must be 0 or more")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise BadRequest(f"parameter 'per_page': must be 1 to {MAX_PER_PAGE}")
        if page * per_page > MAX_SKIP:
            raise BadRequest(f"parameter 'page': past the first {MAX_SKIP:,} items; narrow "
                             f"the filters instead")
        return page, per_page

    def after_arg(self, page: int, name: str = "after") -> ObjectId | None:
        """The keyset anchor `name` (an id from the last page's ``next_after``), or None;
        it replaces the page number, so it comes with page 0 only."""
        if name not in self.args:
            return None
        if page:
            raise ValidationError(f"parameter {name!r}: give it or 'page', not both",
                                  field=name)
        return object_id(self.args[name], name,
                         f"parameter {name!r}: not an id: {self.args[name]!r}")

    # Authentication -------------------------------------------------------------
    def _token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        token = self.get_query_argument("token", None)
        if token:
            return token
        cookie = self.get_cookie(COOKIE)
        if cookie:
            self._via_cookie = True
        return cookie

    async def authenticate(self) -> Principal:
        token = self._token()
        if not token:
            raise AuthenticationFailed("log in first: no token given")
        claims = self.claims = self.ctx.tokens.verify(token)
        principal = await self.ctx.accounts.principal_by_id(claims.account_id)
        if principal is None or principal.token_version != claims.version:
            raise AuthenticationFailed("invalid or expired token")
        if claims.expires_at - time.time() < self.ctx.config.api.token_refresh_s:
            self.issue_token(principal)  # refreshed before it expires
        return principal

    def served_over_https(self) -> bool:
        """Whether people reach us over TLS: directly, or through a proxy in front of
        ``api.public_url`` (whose forwarding headers are not trusted)."""
        return self.request.protocol == "https" or \
            self.ctx.config.api.public_url.startswith("https://")

    def issue_token(self, principal: Principal) -> str:
        token = self.ctx.tokens.issue(principal.id, principal.token_version)
        self.set_header(TOKEN_HEADER, token)
        self.set_cookie(COOKIE, token, httponly=True, samesite="Strict",
                        secure=self.served_over_https(),
                        expires_days=self.ctx.config.api.token_expiry_s / 86400, path="/")
        return token

    # Replies --------------------------------------------------------------------
    def envelope(self, code: int, message: str, data: Any = None, **extra: Any
                 ) -> dict[str, Any]:
        return {"_id": self.request_id, "code": code, "message": message,
                "timestamp": datetime.now(UTC).isoformat(), "data": data, **extra}

    def reply(self, data: Any, code: int = 200, message: str = "OK", **extra: Any) -> None:
        self.set_status(code)
        self.finish(dumps(self.envelope(code, message, data, **extra)))

    def reply_page(self, items: list[Any], total: int, page: int, per_page: int, *,
                   capped: bool | None = None, **extra: Any) -> None:
        """A paginated reply. A listing whose count stops at ``api.count_limit`` says
        so with ``total_capped`` (``total_count`` is then the limit: there are more);
        `extra` adds keys such as ``next_after``."""
        if capped is not None:
            extra["total_capped"] = capped
        self.reply(items, page=page, per_page=per_page, count=len(items), total_count=total,
                   page_count=math.ceil(total / per_page) if per_page else 0, **extra)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place monq errors become HTTP statuses; never a traceback."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = self._reason
        if isinstance(exc, Error):
            status_code, message = exc.status, exc.message
            if isinstance(exc, TooManyRequests):
                self.set_header("Retry-After", str(exc.retry_after_s))
            if isinstance(exc, AuthenticationFailed):
                self.set_header("WWW-Authenticate", "Bearer")
            if isinstance(exc, DatabaseUnavailable):
                self.set_header("Retry-After", str(exc.retry_after_s))
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message or self._reason
        elif status_code >= 500:
            message = "internal error (request " + self.request_id + ")"
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dumps(self.envelope(status_code, message)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, Error | tornado.web.HTTPError) and not (
                isinstance(value, Error) and value.status >= 500):
            return
        if isinstance(value, DatabaseUnavailable):  # an outage, not a bug: no traceback
            log.warning("request %s: %s", self.request_id, value.message,
                        extra={"action": "database_unavailable",
                               "request_id": self.request_id, "reason": value.reason})
            return
        log.error("request %s failed: %s", self.request_id,
                  "".join(traceback.format_exception(typ, value, tb)),
                  extra={"action": "request_failed", "request_id": self.request_id})


class NotFoundHandler(BaseHandler):
    public = True

    async def prepare(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        raise tornado.web.HTTPError(404, "no such route")


def access_log(handler: tornado.web.RequestHandler) -> None:
    """Access log lines without query strings (they may hold tokens or passwords)."""
    request = handler.request
    log.info("%s %s %d %.1fms", request.method, request.path, handler.get_status(),
             request.request_time() * 1000,
             extra={"action": "access", "request_id": getattr(handler, "request_id", None),
                    "remote": request.remote_ip})
