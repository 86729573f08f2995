"""The API over real sockets: the `api` fixture runs the server on a free port in the
test's event loop and gives a small client.

    async def test_x(api):
        token = await api.login("admin", api.admin_password)
        reply = await api.call("GET", "/roles", token=token)
        user_token = await api.user("test", perms=["api://monq.api.jobs.history"])
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from monq.api.server import ApiServer
from monq.core.config import Config
from monq.core.store import Store

ADMIN_PASSWORD = "admin-secret-password"


@dataclass
class Reply:
    code: int
    body: dict[str, Any]
    headers: Any

    @property
    def data(self) -> Any:
        return self.body.get("data")


class ApiClient:
    def __init__(self, base_url: str, server: ApiServer) -> None:
        self.base_url = base_url
        self.server = server
        self.http = AsyncHTTPClient(force_instance=True)
        self.admin_password = ADMIN_PASSWORD

    async def call(self, method: str, path: str, *, token: str | None = None,
                   json_body: Any = None, query: dict[str, Any] | None = None,
                   body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        url = self.base_url + "/api/v1" + path + ("?" + urlencode(query) if query else "")
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT"):
            body = b""
        response: HTTPResponse = await self.http.fetch(
            url, method=method, headers=all_headers, body=body, raise_error=False,
            allow_nonstandard_methods=True, request_timeout=30)
        try:
            parsed = json.loads(response.body or b"{}")
        except ValueError:
            parsed = {"raw": response.body}
        return Reply(response.code, parsed, response.headers)

    async def login(self, username: str, password: str) -> str:
        reply = await self.call("POST", "/login", json_body={"username": username,
                                                             "password": password})
        assert reply.code == 200, reply.body
        return str(reply.data["token"])

    async def admin(self) -> str:
        return await self.login("admin", ADMIN_PASSWORD)

    async def user(self, name: str, *, perms: list[str] = (),  # type: ignore[assignment]
                   roles: list[str] = ("standard_user",),  # type: ignore[assignment]
                   password: str = "user-password-1") -> str:
        """Create a user as admin and log in as them; their token."""
        reply = await self.call("POST", "/roles", token=await self.admin(), json_body={
            "name": name, "email": f"{name}@example.com", "password": password,
            "role": list(roles), "perm": list(perms)})
        assert reply.code == 200, reply.body
        return await self.login(name, password)


@contextlib.asynccontextmanager
async def serving(server: ApiServer) -> AsyncIterator[ApiClient]:
    """Run `server` on its port until the block ends; a client of it."""
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    await asyncio.wait_for(server.started.wait(), 30)
    client = ApiClient(f"http://127.0.0.1:{server.port}", server)
    try:
        yield client
    finally:
        client.http.close()
        stop.set()
        await task


@pytest.fixture
async def api(config: Config, store: Store) -> AsyncIterator[ApiClient]:
    server = ApiServer(config.with_values(api={"host": "127.0.0.1", "port": 0}), store,
                       out=io.StringIO())
    async with serving(server) as client:
        yield client


@pytest.fixture
async def server_with(config: Config, db_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Start an API server with its own store (client options) and configuration."""
    started: list[tuple[asyncio.Event, asyncio.Task[None], Store]] = []

    async def start(store_options: dict[str, Any] | None = None, **api: Any
                    ) -> tuple[ApiClient, Store]:
        store = Store(db_url, timeout_s=10, **(store_options or {}))
        await store.ensure_indexes()
        server = ApiServer(config.with_values(api={"port": 0, **api}), store,
                           out=io.StringIO())
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        await asyncio.wait_for(server.started.wait(), 30)
        started.append((stop, task, store))
        return ApiClient(f"http://127.0.0.1:{server.port}", server), store

    yield start
    for stop, task, store in started:
        stop.set()
        await task
        await store.close()
