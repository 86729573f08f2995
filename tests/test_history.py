"""The summarizer, its lease, roll-ups, and the history routes."""

import asyncio
import signal
from datetime import UTC, datetime, timedelta

import pytest

from monq.core.config import Config
from monq.core.store import Store, layout
from monq.core.store.history import HistoryStore
from monq.history.daemon import Summarizer
from monq.queue.queue import Queue, WorkerRef
from tests.api_fixtures import ApiClient
from tests.helpers import spawn_monq

DUMMY = "monq.jobs.example.DummyJob"
FAILING = "monq.jobs.example.FailingJob"
T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def history(store: Store) -> list[dict]:
    return await store.collection(layout.HISTORY).find({"resolution": "second"}).sort(
        "created", 1).to_list(None)


async def test_history_written_on_change_only(store: Store, config: Config) -> None:
    queue = Queue(store, config)
    clock = Clock(datetime.now(UTC))
    summarizer = Summarizer(store, config, clock=clock, holder="a")
    await queue.enqueue(DUMMY)
    await queue.enqueue(DUMMY)
    await queue.enqueue(FAILING)
    assert await summarizer.tick()
    clock.now += timedelta(seconds=1)
    assert not await summarizer.tick()  # nothing changed: nothing written
    claim = await queue.claim(WorkerRef("w", "h", 1))
    assert claim is not None
    await queue.flag_nonstop(claim.job.id)
    clock.now += timedelta(seconds=1)
    assert await summarizer.tick()
    docs = await history(store)
    assert len(docs) == 2
    assert (docs[0]["pending"], docs[0]["total"]) == (3, 3) and "running" not in docs[0]
    assert (docs[1]["pending"], docs[1]["running"], docs[1]["total"]) == (2, 1, 3)
    running = [r for r in docs[1]["jobs"] if r["state"] == "running"]
    assert running == [{"name": claim.job.name, "state": "running", "n": 1, "zombie": False,
                        "wall": True, "killed": False, "removed": False}]
    await queue.complete(claim.job.id, claim.token)
    clock.now += timedelta(seconds=1)
    assert await summarizer.tick()
    assert (await history(store))[-1]["total"] == 2
    summaries = await store.collection(layout.EVENT).count_documents({"name": "summary"})
    assert summaries == 3  # published to the queue channel with each change


async def test_one_writer_and_failover(store: Store, config: Config) -> None:
    queue = Queue(store, config)
    clock = Clock(datetime.now(UTC))
    a = Summarizer(store, config, clock=clock, holder="a")
    b = Summarizer(store, config, clock=clock, holder="b")
    await queue.enqueue(DUMMY)
    assert await a.tick()
    await queue.enqueue(DUMMY)
    assert not await b.tick() and not b.active  # a holds the lease
    clock.now += timedelta(seconds=1)
    assert await a.tick()
    # a dies: b takes over once the lease has expired
    await queue.enqueue(DUMMY)
    clock.now += timedelta(seconds=config.summarizer.lease_s - 1)
    assert not await b.tick()
    clock.now += timedelta(seconds=2)
    assert await b.tick() and b.active
    assert (await history(store))[-1]["total"] == 3
    assert not await a.tick() and not a.active  # the old one, back, does not write


async def test_roll_up_keeps_the_maximum(store: Store, config: Config) -> None:
    hist = HistoryStore(store)
    await hist.insert_many([
        {"resolution": "second", "created": T0 - timedelta(seconds=5), "pending": 1,
         "total": 1, "jobs": [{"name": "x", "state": "pending", "n": 1, "zombie": False,
                               "wall": False, "killed": False, "removed": False}]},
        {"resolution": "second", "created": T0 + timedelta(seconds=10), "pending": 4,
         "total": 4, "jobs": []},
        {"resolution": "second", "created": T0 + timedelta(seconds=20), "running": 2,
         "pending": 1, "total": 3, "jobs": []},
    ])
    summarizer = Summarizer(store, config, clock=Clock(T0 + timedelta(minutes=1, seconds=5)))
    await summarizer.roll_up(T0 + timedelta(minutes=1, seconds=5))
    minute = await store.collection(layout.HISTORY).find_one(
        {"resolution": "minute", "created": T0})
    assert (minute["pending"], minute["running"], minute["total"]) == (4, 2, 4)


@pytest.mark.slow
async def test_summarizer_processes_fail_over(store: Store, config: Config,
                                              monq_env: dict[str, str]) -> None:
    env = {**monq_env, "MONQ_SUMMARIZER_LEASE_S": "2"}
    queue = Queue(store, config)
    with spawn_monq("summarizer", env=env) as first, spawn_monq("summarizer", env=env):
        await queue.enqueue(DUMMY)
        await wait_history(store, total=1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        await queue.enqueue(DUMMY)
        await wait_history(store, total=2)  # the other took over
    seconds = [d["created"] for d in await history(store)]
    assert len(seconds) == len(set(seconds))


async def wait_history(store: Store, total: int, timeout_s: float = 60) -> None:
    """Wait for the latest history document to count `total` jobs (a summarizer process
    takes seconds to start on a loaded machine: the timeout is for a failing test)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        docs = await history(store)
        if docs and docs[-1]["total"] == total:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no history with total {total}")


async def seed(store: Store) -> None:
    rows = [{"name": DUMMY, "state": "pending", "n": 1, "zombie": False, "wall": False,
             "killed": False, "removed": False},
            {"name": FAILING, "state": "running", "n": 2, "zombie": False, "wall": False,
             "killed": False, "removed": False}]
    await HistoryStore(store).insert_many([
        {"resolution": "second", "created": T0 + timedelta(seconds=i), "pending": i + 1,
         "total": i + 1, "jobs": rows} for i in range(10)] + [
        {"resolution": "minute", "created": T0 + timedelta(minutes=i), "pending": 10 * i,
         "total": 10 * i, "jobs": []} for i in range(1, 4)])


async def test_jobs_history_pages_sorts_and_ranges(api: ApiClient, store: Store) -> None:
    await seed(store)
    token = await api.user("test", perms=["api://monq.api.jobs.history",
                                          f"job://{DUMMY}/r"])
    newest = await api.call("GET", "/jobs/history", token=token,
                            query={"per_page": 3, "resolution": "second"})
    assert newest.code == 200
    assert newest.body["total_count"] == 10 and newest.body["page_count"] == 4
    assert [r["pending"] for r in newest.data] == [10, 9, 8]
    oldest = await api.call("GET", "/jobs/history", token=token,
                            query={"per_page": 3, "page": 3, "sort": 1,
                                   "resolution": "second"})
    assert [r["pending"] for r in oldest.data] == [10] and oldest.body["count"] == 1
    ranged = await api.call("GET", "/jobs/history", token=token, query={
        "start": (T0 + timedelta(seconds=2)).isoformat(),
        "end": (T0 + timedelta(seconds=5)).isoformat(), "sort": 1})
    assert [r["pending"] for r in ranged.data] == [3, 4, 5]
    assert set(ranged.data[0]) == {"created", "pending", "total", "jobs"}
    names = {r["name"] for r in ranged.data[0]["jobs"]}
    assert names == {DUMMY, "UnauthorizedJob"}  # counted, not named
    minutes = await api.call("GET", "/jobs/history", token=token,
                             query={"resolution": "minute", "sort": 1})
    assert [r["total"] for r in minutes.data] == [10, 20, 30]


@pytest.mark.parametrize(("query", "message"), [
    ({"start": "2026-01-02T00:00:00+00:00", "end": "2026-01-01T00:00:00+00:00"},
     "parameter 'end': before 'start'"),
    ({"start": "2026-01-01T00:00:00"}, "parameter 'start': give a time zone"),
    ({"start": "yesterday"}, "parameter 'start': expected an ISO 8601 time"),
    ({"resolution": "day"}, "parameter 'resolution': one of"),
    ({"sort": "2"}, "parameter 'sort': 1 (oldest first)"),
    ({"per_page": "0"}, "parameter 'per_page': must be 1 to"),
    ({"filter": "{}"}, "unknown parameter 'filter'"),
])
async def test_jobs_history_bad_parameters(api: ApiClient, query: dict,
                                           message: str) -> None:
    reply = await api.call("GET", "/jobs/history", token=await api.admin(), query=query)
    assert reply.code == 400 and reply.body["message"].startswith(message)


async def test_history_needs_its_permission(api: ApiClient) -> None:
    token = await api.user("plain")
    assert (await api.call("GET", "/jobs/history", token=token)).code == 403


async def test_queue_history_series(api: ApiClient, store: Store) -> None:
    await seed(store)
    reply = await api.call("GET", "/queue/history", token=await api.admin(), query={
        "start": T0.isoformat(), "end": (T0 + timedelta(seconds=10)).isoformat(),
        "buckets": 5, "resolution": "second"})
    assert reply.code == 200
    assert [p["pending"] for p in reply.data] == [2, 4, 6, 8, 10]  # the maximum per bucket
    later = await api.call("GET", "/queue/history", token=await api.admin(), query={
        "start": (T0 + timedelta(seconds=20)).isoformat(),
        "end": (T0 + timedelta(seconds=30)).isoformat(), "buckets": 2,
        "resolution": "second"})
    assert [p["pending"] for p in later.data] == [10, 10]  # carried from before the range
