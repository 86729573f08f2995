"""The API server as a service: bootstraps the admin user and roles on first start,
listens, and stops cleanly."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import tornado.httpserver
import tornado.netutil

from monq.api.app import make_app, make_context
from monq.api.stream import EventHub
from monq.core.auth.accounts import Accounts
from monq.core.config import Config
from monq.core.services import wait_for_database
from monq.core.store import Store

log = logging.getLogger("monq.api")
HARD_BODY_LIMIT = 64 * 1024 * 1024  # bytes the server reads at all
SHUTDOWN_WAIT_S = 5.0


class ApiServer:
    name = "serve"

    def __init__(self, config: Config, store: Store, out: Any = None) -> None:
        self.config = config
        self.store = store
        self.out = out or sys.stdout
        self.port: int | None = None
        self.started = asyncio.Event()
        self.hub: EventHub | None = None

    @property
    def url(self) -> str:
        if self.config.api.public_url:
            return self.config.api.public_url
        return f"http://{self.config.api.host}:{self.port}/"

    async def run(self, stop: asyncio.Event) -> None:
        if not await wait_for_database(self.store, stop, "serve"):
            return
        # Requests get a client of their own whose operations have a time budget, so
        # that while MongoDB does not answer they fail with 503 within it; the event
        # hub keeps the service's client and its own retries.
        requests = Store(self.store.url, timeout_s=self.store.timeout_s,
                         operation_timeout_s=self.config.api.database_timeout_s,
                         app_name="monq-api")
        try:
            await self._serve(stop, requests)
        finally:
            await requests.close()

    async def _serve(self, stop: asyncio.Event, requests: Store) -> None:
        ctx = make_context(self.config, requests, hub_store=self.store)
        # start-up is not a request: it waits for the database as the service does
        generated = await Accounts(self.store, self.config).bootstrap()
        assert ctx.hub is not None
        self.hub = ctx.hub
        await ctx.hub.start()
        # well above api.max_body_bytes, so that a body in between gets its 413 from
        # the handler rather than a dropped connection
        server = tornado.httpserver.HTTPServer(
            make_app(ctx), xheaders=False,
            max_body_size=max(HARD_BODY_LIMIT, 2 * self.config.api.max_body_bytes))
        sockets = tornado.netutil.bind_sockets(self.config.api.port, self.config.api.host)
        self.port = sockets[0].getsockname()[1]
        server.add_sockets(sockets)
        print(f"dashboard at {self.url}, API at {self.url}api/v1 (log in as "
              f"{self.config.api.admin_username!r}"
              + (f" with the password {generated!r}: it is shown only this once)"
                 if generated else ")"), file=self.out, flush=True)
        log.info("API server listening on %s", self.url, extra={"action": "api_started"})
        self.started.set()
        try:
            await ctx.hub.wait(stop)  # a hub that cannot go on stops the server
        finally:
            server.stop()
            await ctx.hub.stop()
            # a connection whose peer never answers must not hold the shutdown forever
            try:
                await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_WAIT_S)
            except TimeoutError:
                log.warning("connections still open after %.0f s; stopping anyway",
                            SHUTDOWN_WAIT_S, extra={"action": "api_shutdown_timeout"})


def services(config: Config, store: Store) -> list[ApiServer]:
    return [ApiServer(config, store)]
