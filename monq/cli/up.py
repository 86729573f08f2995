"""``monq up``: one node with everything (embedded database if needed, API server,
worker, scheduler, summarizer, notifier), and the single-role daemons."""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import sys
from pathlib import Path
from typing import Any

from monq.core import embedded
from monq.core.config import Config
from monq.core.errors import ConfigError
from monq.core.services import (
    Service,
    install_signal_handlers,
    run_services,
    wait_for_database,
)
from monq.core.store import Store, mask_url

log = logging.getLogger("monq.up")


def register(sub: Any) -> None:
    up = sub.add_parser("up", help="run everything on this node (embedded database if needed)")
    up.set_defaults(func=up_command)


# role name -> "module:function" building its services from (config, store);
# one a line, added as each role is built.
ROLE_FACTORIES: dict[str, str] = {
    "serve": "monq.api.server:services",
    "worker": "monq.worker.daemon:services",
    "summarizer": "monq.history.daemon:services",
    "scheduler": "monq.schedule.daemon:services",
    "notifier": "monq.notify.daemon:services",
}


def services_for(config: Config, store: Store, roles: tuple[str, ...]) -> list[Service]:
    """The services of the given roles, in the order given."""
    services: list[Service] = []
    for role in roles:
        target = ROLE_FACTORIES.get(role)
        if target is None:
            continue
        module, _, function = target.partition(":")
        services += getattr(importlib.import_module(module), function)(config, store)
    return services


def announce(config: Config, out: Any, embedded_server: embedded.EmbeddedServer | None) -> None:
    where = (f"embedded database at {embedded_server.url} (data in {embedded_server.data_path})"
             if embedded_server else f"MongoDB at {mask_url(config.mongodb.url)}")
    print(f"monq is up: {where}", file=out)
    print("press Ctrl-C to stop", file=out, flush=True)


async def run_node(config: Config, roles: tuple[str, ...], out: Any = sys.stdout,
                   embedded_server: embedded.EmbeddedServer | None = None) -> int:
    stop = asyncio.Event()
    install_signal_handlers(stop, embedded_server.terminate if embedded_server else None)
    store = Store(config.mongodb.url, timeout_s=config.mongodb.connect_timeout_s,
                  app_name="monq-up")
    try:
        if not await wait_for_database(store, stop, "monq up"):
            return 0
        await store.ensure_indexes()
        services = services_for(config, store, roles)
        announce(config, out, embedded_server)
        await run_services(services, stop)
    finally:
        await store.close()
    return 0


def check_api_port(config: Config) -> None:
    """Refuse to start when the API's address is taken (a second `monq up` on this
    machine): said in one line before anything starts, not after the worker has."""
    host, port = config.api.host, config.api.port
    if not port:
        return  # any free port
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ConfigError(f"api.host {host!r}: {exc.strerror or exc}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # as tornado binds: SO_REUSEADDR lets a port in TIME_WAIT be reused, never
            # one with a listener
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise ConfigError(
                    f"the API port {port} on {host} is taken ({exc.strerror}): is another "
                    f"monq up running? Stop it or set api.port (MONQ_API_PORT)") from None


def up_command(ctx: Any) -> int:
    config: Config = ctx.config
    check_api_port(config)
    server = None
    if embedded.wanted(config.mongodb):
        address = embedded.local_address(config.mongodb.url)
        assert address is not None
        var = config.var_path
        (var / "log").mkdir(parents=True, exist_ok=True)
        server = embedded.EmbeddedServer(*address, data_path=Path(var, "db"),
                                         log_path=var / "log" / "embedded.log")
        print(f"starting the embedded database on {server.url} ...", file=ctx.out, flush=True)
        server.start()
        # this node's own clients get the embedded server's options (retryWrites=false)
        config = config.with_values(mongodb={"url": embedded.client_url(config.mongodb.url)})
    try:
        return asyncio.run(run_node(config, ALL_ROLES, ctx.out, server))
    finally:
        if server is not None:
            server.stop()


ALL_ROLES = ("serve", "worker", "scheduler", "summarizer", "notifier")
