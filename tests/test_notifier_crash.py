"""`monq notifier` as a real process, killed with SIGKILL in the middle of sends again
and again: every delivery still arrives at least once, and no more are repeated than
there were kills (``notifier.concurrency`` is 1)."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest

from monq.core.config import Config
from monq.core.store import layout
from monq.queue.queue import Queue
from tests.conftest import untraced
from tests.helpers import MONQ

JOBS = 12
KILLS = 6
SEND_S = 0.4  # how long the receiver takes to answer: kills land inside a send


@pytest.fixture
def config(config: Config) -> Config:
    """The receivers of these tests listen on 127.0.0.1: allow private addresses."""
    return config.with_values(notifier={"webhook_allow_private": True})


class SlowReceiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SlowHandler)
        self.received: list[str] = []
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            return len(self.received)


class SlowHandler(http.server.BaseHTTPRequestHandler):
    server: SlowReceiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received.append(self.headers["X-Monq-Delivery"])
        time.sleep(SEND_S)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[SlowReceiver]:
    server = SlowReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def wait_until(condition: Any, timeout_s: float, what: str, every_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


@pytest.mark.slow
@pytest.mark.chaos
async def test_sigkill_mid_send_loses_nothing_and_repeats_at_most_once_per_kill(
        queue: Queue, monq_env: dict[str, str], db_url: str,
        receiver: SlowReceiver) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    for i in range(JOBS):
        await queue.enqueue("monq.jobs.example.DummyJob", notifications=[
            {"on": ["enqueue_job"], "type": "webhook", "url": url,
             "message": f"job {i}"}])
    env = {**monq_env, "MONQ_NOTIFIER_LEASE_S": "1.5", "MONQ_NOTIFIER_INTERVAL_S": "0.1",
           "MONQ_NOTIFIER_MAX_ATTEMPTS": "1000", "MONQ_NOTIFIER_BACKOFF_S": "0.1",
           "MONQ_NOTIFIER_WEBHOOK_TIMEOUT_S": "1", "MONQ_NOTIFIER_WEBHOOK_SECRET": "s3cret",
           "MONQ_NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true"}
    kills = 0
    for _ in range(KILLS):
        before = receiver.count()
        # untraced: a SIGKILLed process never writes its coverage data (tests/conftest.py);
        # the last notifier below stops by SIGTERM and is measured
        with subprocess.Popen([MONQ, "notifier"], env=untraced(env), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) as process:
            try:
                wait_until(lambda b=before: receiver.count() > b, 60, "a send to start")
            finally:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(db_url)
    deliveries = client.get_default_database()[layout.NOTIFICATION]
    with subprocess.Popen([MONQ, "notifier"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            # a query to the database each time: ten a second, not fifty
            wait_until(lambda: deliveries.count_documents({"state": "delivered"}) == JOBS,
                       120, "every delivery to be delivered", every_s=0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    ids = {d["_id"] for d in deliveries.find({}, {"_id": 1})}
    client.close()

    received = list(receiver.received)
    assert len(ids) == JOBS and set(received) == ids  # every one arrived
    duplicates = len(received) - len(set(received))
    assert duplicates <= kills, (duplicates, kills)
