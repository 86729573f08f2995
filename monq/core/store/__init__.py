"""The store: the only code that talks to MongoDB.

`Store` holds one `pymongo.AsyncMongoClient` and hands out collections by the
names in `monq.core.store.layout`; the query modules beside this one
(`jobs`, `events`, `roles`, ...) hold every query monq makes. Driver errors
are translated into `monq.Error` subclasses here, with the URL's credentials
masked.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pymongo
import pymongo.errors
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.uri_parser import parse_uri

from monq.core import command_count
from monq.core.errors import Conflict, DatabaseUnavailable, StoreError
from monq.core.store import layout

log = logging.getLogger("monq.store")

DEFAULT_DATABASE = "monq"
STREAM_POOL_SIZE = 100  # connections of the change streams' client: one per open stream
_CREDENTIALS = re.compile(r"(?<=://)[^/@]*@")


def mask_url(url: str) -> str:
    """The URL with any user name and password replaced by ``***``."""
    return _CREDENTIALS.sub("***@", url)


def database_name(url: str) -> str:
    """The database a MongoDB URL names, ``monq`` when it names none."""
    try:
        return parse_uri(url, validate=False).get("database") or DEFAULT_DATABASE
    except (pymongo.errors.InvalidURI, ValueError) as exc:
        raise StoreError(f"invalid MongoDB URL {mask_url(url)}: {exc}") from exc


def with_database(url: str, name: str) -> str:
    """The server URL with its database path replaced by `name` (options kept)."""
    scheme, _, rest = url.partition("://")
    hosts, _, tail = rest.partition("/")
    _, _, query = tail.partition("?")
    return f"{scheme}://{hosts}/{name}" + (f"?{query}" if query else "")


def reason(exc: BaseException) -> str:
    """What went wrong reaching MongoDB, in a few words a reader can act on."""
    text = str(exc).lower()
    if "refused" in text or "errno 111" in text or "connect call failed" in text:
        return "connection refused"
    if "unreachable" in text or "no route" in text:
        return "network unreachable"
    if (isinstance(exc, pymongo.errors.PyMongoError) and exc.timeout) or "timed out" in text:
        return "no answer in time"
    if any(word in text for word in ("reset", "closed", "cancelled", "broken pipe", "pool")):
        return "connection lost"
    return type(exc).__name__


def unavailable(url: str, exc: BaseException | None = None) -> DatabaseUnavailable:
    why = reason(exc) if exc is not None else "no answer"
    advice = ("start it, or point mongodb.url (MONQ_MONGODB_URL) at a running server"
              if why in ("connection refused", "no answer") else
              "check that it runs and that this machine reaches it over the network")
    return DatabaseUnavailable(f"MongoDB at {mask_url(url)} does not answer ({why}): {advice}",
                               reason=why)


@contextlib.contextmanager
def translate(url: str) -> Iterator[None]:
    """Turn driver errors raised inside the block into monq errors."""
    try:
        yield
    except pymongo.errors.DuplicateKeyError as exc:
        raise Conflict(f"duplicate key: {exc.details.get('keyValue') if exc.details else exc}"
                       ) from exc
    except (pymongo.errors.ServerSelectionTimeoutError, pymongo.errors.AutoReconnect,
            pymongo.errors.ConnectionFailure) as exc:
        raise unavailable(url, exc) from exc
    except pymongo.errors.InvalidURI as exc:
        raise StoreError(f"invalid MongoDB URL {mask_url(url)}: {exc}") from exc
    except pymongo.errors.PyMongoError as exc:
        if exc.timeout:  # the operation's time budget ran out (timeoutMS): no answer
            raise unavailable(url, exc) from exc
        raise StoreError(f"MongoDB error: {exc}") from exc


class Store:
    """A connection to monq's database; `close` it when done.

    `timeout_s` bounds finding the server and opening a connection. Without
    `operation_timeout_s` an operation on an open connection to a server that
    stopped answering (paused, or cut off by the network) waits until the driver's
    monitor gives the server up, 10 to 20 s; with it, every operation (server
    selection, connection, retries and the server's own work) gets that budget
    and then fails as `DatabaseUnavailable`. The API sets it so that a request
    answers 503 quickly; daemons leave it unset and keep their own retries.
    """

    def __init__(self, url: str, *, timeout_s: float = 3.0,
                 operation_timeout_s: float | None = None, app_name: str = "monq",
                 **client_options: Any) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.operation_timeout_s = operation_timeout_s
        self.unavailable_since: datetime | None = None  # first failure since the last answer
        # job numbers this process reserved ahead (see `monq.core.store.counters`)
        self.number_blocks: Any = None
        # the event inserts of this process's enqueuers, written together
        # (`EventStore.insert_together`)
        self.event_inserts: Any = None
        if operation_timeout_s:
            client_options.setdefault("timeoutMS", int(operation_timeout_s * 1000))
        counting = command_count.listeners()  # empty unless a benchmark asks
        if counting:
            client_options["event_listeners"] = [
                *client_options.get("event_listeners", ()), *counting]
        self._client_options = {
            "serverSelectionTimeoutMS": int(timeout_s * 1000),
            "connectTimeoutMS": int(timeout_s * 1000), "appname": app_name, "tz_aware": True,
            **client_options}
        with translate(url):
            self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                url, **self._client_options)
        self.db: AsyncDatabase[dict[str, Any]] = self.client[database_name(url)]
        self._streams: AsyncMongoClient[dict[str, Any]] | None = None

    def collection(self, name: str) -> AsyncCollection[dict[str, Any]]:
        return self.db[name]

    def stream_collection(self, name: str) -> AsyncCollection[dict[str, Any]]:
        """The collection `name` for a change stream. A stream's ``getMore`` holds
        its connection while it waits for a change, so where this process talks
        over a single connection (``maxPoolSize=1``, as to the embedded server: see
        `monq.core.embedded.client_url`) streams get a client of their own, lest one
        stall every other command of the process; otherwise the one client."""
        if (self.client.options.pool_options.max_pool_size or STREAM_POOL_SIZE) > 1:
            return self.collection(name)
        if self._streams is None:
            with translate(self.url):
                self._streams = AsyncMongoClient(
                    self.url, **{**self._client_options, "maxPoolSize": STREAM_POOL_SIZE,
                                 "appname": f"{self._client_options['appname']} streams"})
        return self._streams[self.db.name][name]

    @contextlib.asynccontextmanager
    async def errors(self) -> AsyncIterator[None]:
        with self._watching(), translate(self.url):
            yield

    @contextlib.contextmanager
    def _watching(self) -> Iterator[None]:
        """Remember since when the server has not answered (for /health)."""
        try:
            yield
        except DatabaseUnavailable:
            if self.unavailable_since is None:
                self.unavailable_since = datetime.now(UTC)
            raise
        self.unavailable_since = None

    async def ping(self) -> None:
        """Raise `DatabaseUnavailable` unless the server answers."""
        with self._watching(), translate(self.url):
            await self.client.admin.command("ping")

    def servers(self) -> list[dict[str, Any]]:
        """What the driver knows of each server right now: address, type, round
        trip and the last error (no query is made)."""
        found = []
        for address, server in self.client.topology_description.server_descriptions().items():
            error = server.error
            found.append({
                "address": f"{address[0]}:{address[1]}", "type": server.server_type_name,
                "round_trip_ms": None if server.round_trip_time is None
                else round(server.round_trip_time * 1000, 1),
                "error": reason(error) if error is not None else None})
        return found

    async def supports_change_streams(self) -> bool:
        with translate(self.url):
            hello = await self.client.admin.command("hello")
        return bool(hello.get("setName") or hello.get("msg") == "isdbgrid")

    async def ensure_indexes(self) -> list[str]:
        """Create every index of the layout; existing ones are left alone."""
        created: list[str] = []
        by_collection: dict[str, list[IndexModel]] = {}
        for index in layout.INDEXES:
            by_collection.setdefault(index.collection, []).append(
                IndexModel(list(index.keys), name=index.name, **index.options))
        with translate(self.url):
            for name, models in by_collection.items():
                created += await self.db[name].create_indexes(models)
            for collection, retired in layout.RETIRED_INDEXES:
                if retired in await self.db[collection].index_information():
                    await self.db[collection].drop_index(retired)
        return created

    async def delete_batch(self, collection: AsyncCollection[dict[str, Any]],
                           query: dict[str, Any], oldest_first: str, limit: int) -> int:
        """Delete at most `limit` documents matching `query`, oldest (by the indexed
        field `oldest_first`) first: a bounded delete for retention passes."""
        with translate(self.url):
            ids = [d["_id"] for d in await collection.find(query, {"_id": 1})
                   .sort(oldest_first, 1).limit(limit).to_list(None)]
            if not ids:
                return 0
            result = await collection.delete_many({"$and": [{"_id": {"$in": ids}}, query]})
        return result.deleted_count

    async def drop_database(self) -> None:
        with translate(self.url):
            await self.client.drop_database(self.db.name)
        self.number_blocks = None  # the counter went with it: a reserved block is void

    async def close(self) -> None:
        """Hand back the job numbers this process reserved and did not use (see
        `monq.core.store.counters`; best effort: a failure leaves a gap), then close."""
        if self.number_blocks is not None:
            from monq.core.store.counters import CounterStore  # it imports this module

            try:
                await CounterStore(self).give_back_numbers()
            except StoreError as exc:
                log.debug("job numbers not handed back: %s", exc)
        if self._streams is not None:
            await self._streams.close()
        await self.client.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
