"""Liveness and the machine-readable description of the API."""

from __future__ import annotations

import time
from typing import Any

from monq.api.base import BaseHandler
from monq.core.auth.permissions import may_call
from monq.core.errors import DatabaseUnavailable, Error


class HealthHandler(BaseHandler):
    """Whether the server runs and MongoDB answers (503 when it does not), and if not,
    what is wrong: the reason (refused, no answer in time, ...), since when requests
    have failed, and, for a caller who may read the metrics, what the driver knows of
    each server (their addresses are not for anyone who can reach the port)."""

    public = True
    summary = "liveness: is MongoDB answering, and if not, why"

    async def get(self) -> None:
        store = self.ctx.store
        started = time.monotonic()
        try:
            await store.ping()
        except DatabaseUnavailable as exc:
            since = store.unavailable_since
            self.set_header("Retry-After", str(exc.retry_after_s))
            self.reply({"mongodb": "down", "reason": exc.reason,
                        "down_since": since.isoformat() if since else None,
                        **await self._detail(database_up=False)}, code=503, message=exc.message)
            return
        self.reply({"mongodb": "ok",
                    "ping_ms": round((time.monotonic() - started) * 1000, 1),
                    **await self._detail(database_up=True)})

    async def _detail(self, database_up: bool) -> dict[str, Any]:
        """The event source always; the servers only for a caller who may read the
        metrics. While the database is away no account can be read, so then a token
        this deployment signed, and not expired, is enough."""
        detail: dict[str, Any] = {"events": self._events()}
        token = self._token()
        if not token:
            return detail
        try:
            if database_up:
                allowed = may_call(await self.authenticate(), "monq.api.metrics", "GET")
            else:
                self.ctx.tokens.verify(token)
                allowed = True
        except Error:
            allowed = False
        if allowed:
            detail["servers"] = self.ctx.store.servers()
        return detail

    def _events(self) -> str:
        """Where the live event stream comes from: change_stream, poll, or stopped."""
        return self.ctx.hub.mode if self.ctx.hub is not None else "stopped"


class OpenApiHandler(BaseHandler):
    """This API as an OpenAPI 3.1 document."""

    public = True
    summary = "the OpenAPI description of every route"

    def initialize(self, ctx: Any, routes: list[tuple[str, type[BaseHandler]]] | None = None
                   ) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.routes = routes or []

    async def get(self) -> None:
        from monq.api.openapi import describe

        self.finish(describe(self.routes))
