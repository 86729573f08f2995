"""Liveness and the machine-readable description of the API."""

from __future__ import annotations

from typing import Any

from monq.api.base import BaseHandler
from monq.core.errors import DatabaseUnavailable


class HealthHandler(BaseHandler):
    """Whether the server runs and MongoDB answers (503 when it does not)."""

    public = True
    summary = "liveness: is MongoDB answering"

    async def get(self) -> None:
        try:
            await self.ctx.store.ping()
        except DatabaseUnavailable as exc:
            self.reply({"mongodb": "down"}, code=503, message=exc.message)
            return
        self.reply({"mongodb": "ok"})


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
