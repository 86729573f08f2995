"""``monq notify list|show|resend``, in this process through `monq.cli.main`."""

from __future__ import annotations

import json

import pytest

from monq.core.config import Config
from monq.core.embedded import free_port
from monq.core.store import Store, layout
from monq.notify.daemon import Notifier
from monq.queue.queue import Queue
from tests.helpers import run_cli_async
from tests.notify_fixtures import Clock, notifier_config, run_job


@pytest.fixture
def config(config: Config) -> Config:
    """The receivers of these tests listen on 127.0.0.1: allow private addresses."""
    return config.with_values(notifier={"webhook_allow_private": True})


async def test_list_show_resend_and_bad_input(store: Store, config: Config,
                                              monq_env: dict[str, str]) -> None:
    queue = Queue(store, config, author="tester")
    job = await run_job(queue, "monq.jobs.example.DummyJob", notifications=[
        {"on": ["complete_job"], "type": "webhook",
         "url": f"http://127.0.0.1:{free_port()}/nobody-listens"}])
    await Notifier(store, notifier_config(config, free_port(), max_attempts=1),
                   clock=Clock()).tick()

    listed = await run_cli_async("notify", "list", "--json", env=monq_env)
    assert listed.returncode == 0, listed.stderr
    [delivery] = json.loads(listed.stdout)["notifications"]
    assert delivery["state"] == "failed" and delivery["number"] == job.number
    assert "Connection refused" in delivery["last_error"]
    table = await run_cli_async("notify", "list", "--state", "failed", "--job", str(job.number),
                     env=monq_env)
    assert delivery["_id"] in table.stdout and "1 of 1 notifications" in table.stdout
    empty = await run_cli_async("notify", "list", "--state", "pending", env=monq_env)
    assert "0 of 0 notifications" in empty.stdout

    shown = await run_cli_async("notify", "show", delivery["_id"], env=monq_env)
    assert shown.returncode == 0 and "complete_job" in shown.stdout
    assert "last_error: webhook: ConnectionRefusedError" in shown.stdout

    resent = await run_cli_async("notify", "resend", delivery["_id"], env=monq_env)
    assert resent.returncode == 0, resent.stderr
    assert f"for job #{job.number}) will be sent again" in resent.stdout
    doc = await store.collection(layout.NOTIFICATION).find_one({"_id": delivery["_id"]})
    assert doc is not None and doc["state"] == "pending" and doc["attempts"] == 0

    for args, code, message in [
            (("notify", "show", "nope"), 2, "not a notification id: 'nope'"),
            (("notify", "resend", "0" * 24), 4, f"no notification {'0' * 24}"),
            (("notify", "list", "--job", "99"), 4, "no job 99"),
            (("notify", "list", "--state", "lost"), 2, "invalid choice")]:
        result = await run_cli_async(*args, env=monq_env)
        assert result.returncode == code, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr
        assert "Traceback" not in result.stderr
    again = await store.collection(layout.NOTIFICATION).find_one({"_id": delivery["_id"]})
    assert again == doc  # refused commands changed nothing
