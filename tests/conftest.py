"""Test harness: a real MongoDB wire server for the whole session, a fresh database
per test.

The server is SecantusDB started on a free port, or the server named by
``MONQ_TEST_MONGODB_URL`` (so the same suite runs against a real MongoDB).
MONQ_ environment variables other than MONQ_TEST_* are cleared for every test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pymongo
import pytest

from monq.core import embedded
from monq.core.config import Config
from monq.core.errors import DatabaseUnavailable
from monq.core.store import Store, with_database
from tests.ws_client import EventClient

pytest_plugins = ["tests.queue_fixtures", "tests.worker_fixtures", "tests.api_fixtures",
                  "tests.notify_fixtures"]

ROOT = Path(__file__).resolve().parent.parent


# The variables by which coverage (patch = ["subprocess"] in pyproject.toml) starts
# itself in every Python child process.
COVERAGE_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


@contextlib.contextmanager
def untraced_children() -> Iterator[None]:
    """Child processes started in this block run without coverage. For the database
    server: it runs no monq code, so tracing it measures nothing, yet it doubled the
    server's CPU, the largest single share of the suite's."""
    saved = {name: os.environ.pop(name) for name in COVERAGE_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def untraced(env: dict[str, str]) -> dict[str, str]:
    """`env` without coverage's variables, for a child process that ends by SIGKILL
    only: coverage writes its data at exit, so tracing such a child measures nothing
    and costs its CPU (the start-up imports under the tracer most of all)."""
    return {k: v for k, v in env.items() if k not in COVERAGE_VARIABLES}


@pytest.fixture(scope="session")
def mongo_server_url() -> Iterator[str]:
    external = os.environ.get("MONQ_TEST_MONGODB_URL")
    if external:
        yield external
        return
    server = embedded.EmbeddedServer("127.0.0.1", embedded.free_port(), ":memory:")
    with untraced_children():
        server.start()
    try:
        yield server.url
    finally:
        discard(server)


def discard(server: embedded.EmbeddedServer) -> None:
    """Stop an in-memory database server by SIGKILL: nothing of it is kept, and its
    orderly stop took 2 s, at the end of every worker's run."""
    process, server.process = server.process, None
    if process is not None:
        process.kill()
        process.wait()


# Tests' recorded durations (seconds, setup to teardown, from a `--durations=0` run of
# the whole suite), longest first: tests/durations.txt, regenerated with
# ``python scripts/stress_tests.py --record-durations LOG``.
DURATIONS = Path(__file__).with_name("durations.txt")


def recorded_durations() -> dict[str, float]:
    found: dict[str, float] = {}
    for line in DURATIONS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            seconds, nodeid = line.split(maxsplit=1)
            found[nodeid] = float(seconds)
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest tests first. Under ``--dist loadgroup`` the workers take tests in this
    order, so a minute-long test no longer starts near the end and runs on alone while
    the other workers idle; the rest keep their file order (a stable sort), and every
    worker sorts alike, as xdist requires. A test not in the file counts as quick, and
    so does one of an xdist group: a group is one unit of work (xdist sends the largest
    first) whose tests must stay together, in file order, to share module fixtures."""
    durations = recorded_durations()

    def key(item: pytest.Item) -> float:
        if item.get_closest_marker("xdist_group"):
            return 0.0
        return -durations.get(item.nodeid, 0.0)

    items.sort(key=key)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Take what the collection left (every test module, monq, hypothesis, playwright,
    schemathesis: some 100,000 objects that live as long as the run) out of the
    garbage collector's reach: each full collection walked all of them again, about a
    fifth of the CPU of the tests that run in the pytest process."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MONQ_") and not name.startswith("MONQ_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def db_url(mongo_server_url: str) -> Iterator[str]:
    """A fresh database for this test, dropped afterwards (also when only processes
    the test started used it)."""
    name = f"monq_t_{uuid.uuid4().hex[:12]}"
    yield with_database(mongo_server_url, name)
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        mongo_server_url, serverSelectionTimeoutMS=10_000)
    try:
        client.drop_database(name)
    finally:
        client.close()


# argon2id at its least cost (api.password_*): logins in tests prove the flow, not the
# cost, which at the defaults (about 0.3 s of CPU per hash or check on this machine,
# several per API test) was the largest single share of the suite's time.
CHEAP_PASSWORDS = {"password_time_cost": 1, "password_memory_kib": 8,
                   "password_parallelism": 1}


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return Config().with_values(
        mongodb={"url": db_url, "embedded": "never"},
        paths={"var": str(tmp_path / "var")},
        api={"port": 0, "admin_password": "admin-secret-password", **CHEAP_PASSWORDS},
    )


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = Store(db_url, timeout_s=10)
    await store.ensure_indexes()
    try:
        yield store
    finally:
        await drop(store)
        await store.close()


async def drop(store: Store) -> None:
    """Drop the test's database. A loaded machine can make the driver cancel an operation
    (its server monitor timed out): clean-up tries again rather than fail a passed test."""
    for attempt in range(3):
        try:
            await store.drop_database()
            return
        except DatabaseUnavailable:
            if attempt == 2:
                raise
            await asyncio.sleep(1)


@pytest.fixture
def monq_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the `monq` executable against this test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONQ_")}
    env.update(MONQ_MONGODB_URL=db_url, MONQ_MONGODB_EMBEDDED="never",
               MONQ_PATHS_VAR=str(tmp_path / "var"), PYTHONUNBUFFERED="1",
               **{f"MONQ_API_{key.upper()}": str(value)
                  for key, value in CHEAP_PASSWORDS.items()})
    return env


@pytest.fixture
async def close_ws_clients() -> AsyncIterator[None]:
    """Every event websocket a test opened is closed after it, failed or not, while
    its event loop still runs (``pytestmark = pytest.mark.usefixtures(...)``)."""
    EventClient.opened.clear()
    yield
    for client in EventClient.opened:
        client.close()
