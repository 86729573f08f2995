"""The CLI over HTTP: `RemoteBackend` implements `monq.cli.backend.Backend` with the
API's routes (``--server URL``), so that someone without database credentials works
within their permissions; and the token file ``monq login`` writes.

The server's errors become the CLI's: 400 a bad request (exit 2), 401/403 refused
(exit 1, with the server's message), 404 not found (4), 409/412 a conflict (5).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse

from monq.core import errors

Json = dict[str, Any]
API_PATH = "/api/v1"
TOKEN_HEADER = "X-Monq-Token"  # noqa: S105 - a header name: the server's refreshed token
REQUEST_TIMEOUT_S = 60.0
PER_PAGE = 1000
STATUS_ERRORS: dict[int, type[errors.Error]] = {
    400: errors.BadRequest, 401: errors.AuthenticationFailed, 403: errors.PermissionDenied,
    404: errors.NotFound, 409: errors.Conflict, 412: errors.StaleEtag,
    429: errors.TooManyRequests, 503: errors.DatabaseUnavailable,
}


# The token file -------------------------------------------------------------------
def token_path() -> Path:
    """``$XDG_CONFIG_HOME/monq/tokens.json`` (default ``~/.config``): server URL -> token."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "monq" / "tokens.json"


def api_base(server: str) -> str:
    """The API's base URL from what a user gives: ``http://host:5001`` or ``.../api/v1``."""
    url = server.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise errors.BadRequest(f"--server: expected an http:// or https:// URL, got {server!r}")
    return url if url.endswith(API_PATH) else url + API_PATH


def _read_tokens() -> dict[str, str]:
    try:
        data = json.loads(token_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) \
        else {}


def load_token(server: str) -> str | None:
    return _read_tokens().get(api_base(server))


def save_token(server: str, token: str | None) -> Path:
    """Store (or, with None, forget) the token for `server`; the file is mode 0600."""
    tokens = _read_tokens()
    if token is None:
        tokens.pop(api_base(server), None)
    else:
        tokens[api_base(server)] = token
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(tokens, handle, indent=2)
    return path


# HTTP ---------------------------------------------------------------------------
class Http:
    """JSON requests to the API; replies unwrapped from the envelope, errors raised."""

    def __init__(self, server: str, token: str | None, *, persist: bool = False) -> None:
        self.base = api_base(server)
        self.server = server
        self.token = token
        self.persist = persist  # keep the server's refreshed tokens in the token file
        self.client = AsyncHTTPClient(force_instance=True)

    def close(self) -> None:
        self.client.close()

    async def call(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                   body: Any = None) -> Json:
        """The whole reply envelope of a successful call."""
        url = self.base + path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None or method in ("POST", "PUT"):
            data = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
        try:
            response: HTTPResponse = await self.client.fetch(
                url, method=method, headers=headers, body=data, raise_error=False,
                allow_nonstandard_methods=True, request_timeout=REQUEST_TIMEOUT_S)
        except (OSError, HTTPClientError) as exc:
            raise errors.ServerUnavailable(f"monq server {self.base} does not answer: "
                                           f"{exc}") from exc
        if response.code == 599:
            raise errors.ServerUnavailable(
                f"monq server {self.base} does not answer: {response.error}")
        fresh = response.headers.get(TOKEN_HEADER)
        if fresh and self.persist and fresh != self.token:
            self.token = fresh
            save_token(self.server, fresh)
        return self._unwrap(response)

    def _unwrap(self, response: HTTPResponse) -> Json:
        try:
            envelope = json.loads(response.body or b"{}")
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict):
            raise errors.Error(f"{self.base}: HTTP {response.code}, not a monq API reply")
        if response.code >= 400:
            kind = STATUS_ERRORS.get(response.code, errors.Error)
            raise kind(str(envelope.get("message") or f"HTTP {response.code}"))
        return envelope

    async def data(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.call(method, path, **kwargs)).get("data")

    async def pages(self, path: str, query: dict[str, Any], limit: int | None = None
                    ) -> tuple[list[Any], int]:
        """Every item of a paginated route (up to `limit`) and its total count."""
        items: list[Any] = []
        page = 0
        while True:
            per_page = PER_PAGE if limit is None else max(1, min(PER_PAGE, limit - len(items)))
            reply = await self.call("GET", path, query={**query, "page": page,
                                                         "per_page": per_page})
            items += reply.get("data") or []
            total = int(reply.get("total_count") or 0)
            page += 1
            if page >= int(reply.get("page_count") or 0) or (
                    limit is not None and len(items) >= limit):
                return items, total


def _job(job_id: str) -> str:
    return "/jobs/" + quote(str(job_id), safe="")


EVENT_PAGE = 1000  # events read a poll; a follower polls again for the rest


class RemoteBackend:
    """`Backend` over the HTTP API of a monq server."""

    def __init__(self, server: str, token: str | None) -> None:
        stored = None if token else load_token(server)
        if not (token or stored):
            raise errors.AuthenticationFailed(
                f"no token for {api_base(server)}: run `monq login --server {server} "
                f"--username NAME` or give --token")
        self.http = Http(server, token or stored, persist=stored is not None)

    def close(self) -> None:
        self.http.close()

    # Jobs -----------------------------------------------------------------------
    async def enqueue(self, name: str, args: Json, options: Json) -> Json:
        body = {"name": name, "args": args, **options}
        if isinstance(body.get("at"), datetime):
            body["at"] = body["at"].isoformat()
        return await self.http.data("POST", "/jobs", body=body)  # type: ignore[no-any-return]

    async def job(self, job_id: str) -> Json:
        return await self.http.data("GET", _job(job_id))  # type: ignore[no-any-return]

    async def jobs(self, *, states: Sequence[str], name: str | None, finished: bool,
                   limit: int) -> tuple[list[Json], int]:
        query: dict[str, Any] = {"finished": str(finished).lower()}
        if states:
            query["state"] = ",".join(states)
        if name:
            query["name"] = name
        return await self.http.pages("/jobs", query, limit)

    async def job_events(self, job_id: str) -> list[Json]:
        return await self.http.data("GET", _job(job_id) + "/events")  # type: ignore[no-any-return]

    async def job_log(self, job_id: str, limit: int) -> list[Json]:
        lines, _ = await self.http.pages(_job(job_id) + "/log", {}, limit)
        return lines

    async def act(self, action: str, job_id: str) -> Json:
        return await self.http.data("POST", f"{_job(job_id)}/{action}")  # type: ignore[no-any-return]

    # Operations -----------------------------------------------------------------
    async def history(self, resolution: str, since: datetime) -> list[Json]:
        rows, _ = await self.http.pages("/jobs/history", {
            "sort": 1, "start": since.isoformat(), "resolution": resolution})
        return rows

    async def workers(self) -> list[Json]:
        return await self.http.data("GET", "/workers")  # type: ignore[no-any-return]

    async def events(self, after: str | None, *, channels: Sequence[str] | None,
                     names: Sequence[str] | None, job_id: str | None) -> list[Json]:
        if job_id is None:
            found = []
            for channel in channels or ("queue",):
                query = {"channel": channel, "sort": 1, "per_page": EVENT_PAGE}
                if after is not None:
                    query["after"] = after
                found += await self.http.data("GET", "/event/history", query=query)
            found.sort(key=lambda e: str(e["_id"]))
            return [e for e in found if names is None or e["name"] in names]
        found = await self.http.data("GET", _job(job_id) + "/events")
        return [e for e in found
                if (after is None or e["_id"] > after)
                and (channels is None or e.get("channel", "queue") in channels)
                and (names is None or e["name"] in names)]

    async def maintenance(self) -> Json:
        return await self.http.data("GET", "/maintenance")  # type: ignore[no-any-return]

    async def set_maintenance(self, on: bool, name: str | None) -> Json:
        return await self.http.data(  # type: ignore[no-any-return]
            "POST" if on else "DELETE", "/maintenance", query={"name": name} if name else None)

    # Users and roles ------------------------------------------------------------
    async def records(self, kind: str) -> list[Json]:
        docs, _ = await self.http.pages("/roles", {})
        return [d for d in docs if d.get("kind") == kind]

    async def record(self, kind: str, name: str) -> Json:
        docs, _ = await self.http.pages("/roles", {"name": name})
        for doc in docs:
            if doc.get("kind") == kind and doc.get("name") == name:
                return doc  # type: ignore[no-any-return]
        raise errors.NotFound(f"no {kind} {name!r}")

    async def create_record(self, fields: Json) -> Json:
        return await self.http.data("POST", "/roles", body=fields)  # type: ignore[no-any-return]

    async def update_record(self, record: Json, fields: Json) -> Json:
        return await self.http.data(  # type: ignore[no-any-return]
            "PUT", "/roles/" + quote(record["_id"], safe=""),
            body={"etag": record["etag"], **fields})

    async def delete_record(self, record: Json) -> None:
        await self.http.call("DELETE", "/roles/" + quote(record["_id"], safe=""),
                             query={"etag": record["etag"]})


async def login(server: str, username: str, password: str) -> str:
    """Log in at `server`; the token."""
    http = Http(server, None)
    try:
        data = await http.data("POST", "/login", body={"username": username,
                                                       "password": password})
    finally:
        http.close()
    return str(data["token"])


async def logout(server: str, token: str) -> None:
    """Revoke the user's tokens at the server (a token already invalid is fine)."""
    http = Http(server, token)
    try:
        with contextlib.suppress(errors.AuthenticationFailed):
            await http.call("POST", "/logout")
    finally:
        http.close()
