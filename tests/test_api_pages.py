"""Keyset pages (``after`` / ``before`` beside page numbers) and capped counts of GET
/jobs (the queue and, with ``finished=true``, the journal) and GET /event/history."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from monq.api.jobs import SORTS
from monq.core.config import Config
from monq.core.store import Store, layout
from monq.core.store.events import EventStore, new_event
from monq.core.store.listings import order
from monq.queue.queue import Queue
from tests.api_fixtures import ApiClient
from tests.conftest import ROOT

DUMMY = "monq.jobs.example.DummyJob"
FAILING = "monq.jobs.example.FailingJob"
READ = ["api://monq.api.jobs"]
COUNT_LIMIT = 4


@pytest.fixture
def config(config: Config) -> Config:
    return config.with_values(api={"count_limit": COUNT_LIMIT})


async def walk(api: ApiClient, token: str, path: str, query: dict[str, Any],
               key: str = "after", following: str = "next_after") -> list[dict[str, Any]]:
    """Every item, a page at a time, each page asked for by the last one's key."""
    items: list[dict[str, Any]] = []
    anchor = None
    for _ in range(50):
        reply = await api.call("GET", path, token=token,
                               query={**query, **({key: anchor} if anchor else {})})
        assert reply.code == 200, reply.body
        items += reply.data
        anchor = reply.body[following]
        if anchor is None:
            return items
        assert anchor == reply.data[-1]["_id"]
    raise AssertionError("the pages never ended")


async def test_keyset_pages_of_the_queue_have_no_overlap_and_no_gap(
        api: ApiClient, config: Config, store: Store) -> None:
    queue = Queue(store, config)
    # priorities repeat, so the sort by priority needs its tie-breaker
    jobs = [await queue.enqueue(DUMMY, priority=i % 3) for i in range(10)]
    admin = await api.admin()
    for query in ({"per_page": 3}, {"per_page": 4, "descending": "true"},
                  {"per_page": 3, "sort": "priority"},
                  {"per_page": 2, "sort": "priority", "descending": "true"},
                  {"per_page": 3, "sort": "enqueued"}):
        walked = await walk(api, admin, "/jobs", query)
        paged = (await api.call("GET", "/jobs", token=admin,
                                query={**query, "per_page": 100})).data
        assert [j["_id"] for j in walked] == [j["_id"] for j in paged], query
        assert sorted(j["_id"] for j in walked) == sorted(str(j.id) for j in jobs)


async def test_keyset_pages_of_the_journal_and_a_job_that_finished_meanwhile(
        api: ApiClient, config: Config, store: Store) -> None:
    queue = Queue(store, config)
    jobs = [await queue.enqueue(DUMMY) for _ in range(7)]
    admin = await api.admin()
    for job in jobs[:5]:
        await queue.kill(job.id)
    walked = await walk(api, admin, "/jobs", {"finished": "true", "per_page": 2})
    assert [j["number"] for j in walked] == [j.number for j in jobs[:5]]
    # the anchor of a page of the queue finishes before the next page is asked for
    first = await api.call("GET", "/jobs", token=admin, query={"per_page": 1})
    assert [j["_id"] for j in first.data] == [str(jobs[5].id)]
    await queue.kill(jobs[5].id)
    rest = await api.call("GET", "/jobs", token=admin,
                          query={"per_page": 1, "after": first.body["next_after"]})
    assert [j["_id"] for j in rest.data] == [str(jobs[6].id)]
    assert rest.body["next_after"] is None


async def test_keyset_pages_show_only_jobs_the_user_may_read(
        api: ApiClient, config: Config, store: Store) -> None:
    queue = Queue(store, config)
    mine, secret = [], []
    for i in range(8):
        job = await queue.enqueue(FAILING if i % 2 else DUMMY)
        (secret if i % 2 else mine).append(str(job.id))
    reader = await api.user("reader", perms=[*READ, "job://monq.jobs.example.Dummy*/r"])
    walked = await walk(api, reader, "/jobs", {"per_page": 3})
    assert [j["_id"] for j in walked] == mine
    # a job they may not read is no anchor: refused exactly like one that does not exist
    hidden = await api.call("GET", "/jobs", token=reader, query={"after": secret[0]})
    missing = await api.call("GET", "/jobs", token=reader,
                             query={"after": "0" * 24})
    assert hidden.code == missing.code == 400
    assert hidden.body["message"] == f"parameter 'after': no job {secret[0]}"
    assert missing.body["message"] == f"parameter 'after': no job {'0' * 24}"


async def test_a_bad_after_is_a_400_naming_it_and_changes_nothing(
        api: ApiClient, config: Config, store: Store) -> None:
    job = await Queue(store, config).enqueue(DUMMY)
    admin = await api.admin()
    for query, message in (
            ({"after": "yesterday"}, "parameter 'after': not an id: 'yesterday'"),
            ({"after": str(job.id), "page": 1},
             "parameter 'after': give it or 'page', not both")):
        bad = await api.call("GET", "/jobs", token=admin, query=query)
        assert (bad.code, bad.body["message"]) == (400, message)
    for name in ("after", "before"):
        bad = await api.call("GET", "/event/history", token=admin, query={name: "x"})
        assert (bad.code, bad.body["message"]) == (
            400, f"parameter {name!r}: not an event id: 'x'")
    assert (await api.call("GET", "/jobs", token=admin)).body["total_count"] == 1


async def test_counts_stop_at_the_limit_and_say_so(api: ApiClient, config: Config,
                                                   store: Store) -> None:
    queue = Queue(store, config)
    for _ in range(COUNT_LIMIT):
        await queue.enqueue(DUMMY)
    admin = await api.admin()
    exact = await api.call("GET", "/jobs", token=admin, query={"per_page": 2})
    assert (exact.body["total_count"], exact.body["total_capped"]) == (COUNT_LIMIT, False)
    assert exact.body["page_count"] == 2
    await queue.enqueue(DUMMY)
    capped = await api.call("GET", "/jobs", token=admin, query={"per_page": 2})
    assert (capped.body["total_count"], capped.body["total_capped"]) == (COUNT_LIMIT, True)
    # the pages go on past the count
    assert len(await walk(api, admin, "/jobs", {"per_page": 2})) == COUNT_LIMIT + 1
    events = await api.call("GET", "/event/history", token=admin,
                            query={"channel": "queue"})
    assert (events.body["total_count"], events.body["total_capped"]) == (COUNT_LIMIT, True)
    assert events.body["count"] == COUNT_LIMIT + 1


async def test_keyset_pages_of_the_event_history_both_ways(
        api: ApiClient, config: Config, store: Store) -> None:
    await EventStore(store).insert([new_event("message", channel="message", author="a",
                                              data={"text": f"m{i}"}) for i in range(9)])
    token = await api.user("historian")
    query = {"channel": "message", "per_page": 2}
    newest_first = await walk(api, token, "/event/history", query, "before", "next_before")
    assert [e["data"]["text"] for e in newest_first] == [f"m{i}" for i in range(8, -1, -1)]
    oldest_first = await walk(api, token, "/event/history", {**query, "sort": 1})
    assert [e["data"]["text"] for e in oldest_first] == [f"m{i}" for i in range(9)]
    ids = [e["_id"] for e in oldest_first]
    between = await api.call("GET", "/event/history", token=token,
                             query={"channel": "message", "after": ids[2],
                                    "before": ids[6], "sort": 1})
    assert [e["_id"] for e in between.data] == ids[3:6]


def _stages(plan: dict[str, Any]) -> list[str]:
    stages = [plan.get("stage", "")]
    for key in ("inputStage", "outerStage", "innerStage"):
        if key in plan:
            stages += _stages(plan[key])
    for child in plan.get("inputStages", []):
        stages += _stages(child)
    return stages


@pytest.mark.parametrize("descending", [False, True])
async def test_every_sort_of_the_journal_is_read_from_an_index(store: Store,
                                                               descending: bool) -> None:
    journal = store.collection(layout.JOURNAL)
    for sort in SORTS.values():
        explained = await journal.find({}).sort(order(sort, descending)).limit(25).explain()
        stages = _stages(explained["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in stages and "SORT" not in stages, (sort, stages)


@pytest.mark.slow
def test_the_reads_benchmark_prints_its_figures(mongo_server_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_api_reads.py"), "--url",
         mongo_server_url, "--jobs", "200", "--pages", "2", "--json"],
        capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout)
    assert found["jobs"] == 200
    for key in ("ratio", "keyset_ratio", "growth"):
        assert found[key] > 0, key
    for part in ("small", "large", "keyset"):
        assert found[part]["api_p50_ms"] > 0 and found[part]["bare_p50_ms"] > 0, part
