"""Helpers of the security tests: a server started with chosen configuration,
and a look at whether a module was imported."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import monq
from monq.api.server import ApiServer
from monq.core.config import Config
from monq.core.store import Store
from tests.api_fixtures import ApiClient

MARKER = "tests.import_marker"


def marker_imported() -> bool:
    """Whether tests/import_marker.py was imported (in this process, where the
    API server of these tests runs)."""
    return MARKER in sys.modules or bool(monq.__dict__.get("_import_marker_imports"))


def forget_marker() -> None:
    sys.modules.pop(MARKER, None)
    monq.__dict__.pop("_import_marker_imports", None)


async def start_server(config: Config, store: Store, **sections: dict[str, Any]
                       ) -> tuple[ApiClient, Callable[[], Any]]:
    """An API server on a free port with `sections` of configuration changed; the
    client and an async function that stops the server."""
    sections = {**sections, "api": {"host": "127.0.0.1", "port": 0,
                                    **sections.get("api", {})}}
    server = ApiServer(config.with_values(**sections), store, out=io.StringIO())
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    await asyncio.wait_for(server.started.wait(), 30)
    client = ApiClient(f"http://127.0.0.1:{server.port}", server)

    async def close() -> None:
        client.http.close()
        stop.set()
        await task

    return client, close


async def served(config: Config, store: Store, **sections: dict[str, Any]
                 ) -> AsyncIterator[ApiClient]:
    client, close = await start_server(config, store, **sections)
    try:
        yield client
    finally:
        await close()


async def healthy(api: ApiClient) -> bool:
    reply = await api.call("GET", "/health")
    return reply.code == 200 and reply.data == {"mongodb": "ok"}
