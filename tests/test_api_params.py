"""Query parameters of every handler are checked in one place (monq/api/base.py)."""

from __future__ import annotations

import pytest

from tests.api_fixtures import ApiClient


@pytest.mark.parametrize("value", ["0245-03-25T01:11:35-19:56", "2200-01-01T00:00:00Z"])
async def test_times_outside_what_event_ids_hold_are_a_400(api: ApiClient, value: str) -> None:
    token = await api.admin()
    for path in ("/event/history", "/jobs/history"):
        query = {"end": value, **({"channel": "queue"} if path == "/event/history" else {})}
        reply = await api.call("GET", path, token=token, query=query)
        assert reply.code == 400, (path, reply.body)
        assert "'end'" in reply.body["message"]
    reply = await api.call("GET", "/event/history", token=token,
                           query={"channel": "queue", "end": "2026-01-01T00:00:00Z"})
    assert reply.code == 200
