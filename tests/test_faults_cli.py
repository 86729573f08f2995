"""The CLI under faults: `monq events` on progress events, a second `monq up`."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

from bson import ObjectId

from monq.core import embedded
from monq.core.store import Store
from monq.core.store.events import EventStore, new_event
from tests.helpers import run_monq


async def test_events_prints_progress_events(store: Store, monq_env: dict[str, str]) -> None:
    job_id = ObjectId()
    await EventStore(store).insert([
        new_event("progress_job", channel="queue", author="w1", now=datetime.now(UTC),
                  data={"_id": job_id, "number": 7, "name": "tests.jobtypes.Slow",
                        "state": "running", "progress": 0.5, "message": "half way",
                        "progress_data": {}}),
        new_event("complete_job", channel="queue", author="w1", now=datetime.now(UTC),
                  data={"_id": job_id, "number": 7, "name": "tests.jobtypes.Slow",
                        "state": "complete"})])
    result = run_monq("events", "--once", "--since", "1m", env=monq_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "progress_job" in lines[0] and "#7" in lines[0] and "50% half way" in lines[0]
    assert "complete_job" in lines[1]


def test_second_up_names_the_taken_port_and_starts_nothing(
        monq_env: dict[str, str], tmp_path: Path) -> None:
    db_port = embedded.free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api_port = taken.getsockname()[1]
        monq_env.update(MONQ_MONGODB_URL=f"mongodb://127.0.0.1:{db_port}/monq",
                        MONQ_MONGODB_EMBEDDED="auto", MONQ_API_PORT=str(api_port),
                        MONQ_PATHS_VAR=str(tmp_path / "var"))
        result = run_monq("up", env=monq_env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"API port {api_port}" in result.stderr and "taken" in result.stderr
    assert "internal error" not in result.stderr
    # nothing started: no embedded database, no output about starting one
    assert not embedded.is_listening("127.0.0.1", db_port)
    assert "starting" not in result.stdout
    assert not (tmp_path / "var" / "db").exists()
