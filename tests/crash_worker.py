"""A process that drives jobs through their life as fast as it can, to be SIGKILLed at
random points by tests/test_queue_crash.py: ``python -m tests.crash_worker URL``."""

from __future__ import annotations

import asyncio
import os
import random
import sys

from monq.core.config import Config
from monq.core.store import Store
from monq.queue.queue import Queue, WorkerRef

NAME = "monq.jobs.example.DummyJob"


async def main(url: str) -> None:
    store = Store(url, timeout_s=10)
    queue = Queue(store, Config(), author="crasher")
    worker = WorkerRef(f"crash-{os.getpid()}", "host", os.getpid())
    print("ready", flush=True)
    while True:
        await queue.enqueue(NAME, attempts=2, retry_delay_s=0)
        claim = await queue.claim(worker)
        if claim is None:
            continue
        job_id, token = claim.job.id, claim.token
        await queue.start(job_id, token)
        await queue.progress(job_id, token, 0.5, "half")
        roll = random.random()
        if roll < 0.6:
            await queue.complete(job_id, token)
        elif roll < 0.8:
            await queue.fail(job_id, token, "boom")
        elif roll < 0.9:
            await queue.defer(job_id, token, "later", delay_s=0)
        else:
            await queue.kill(job_id)
            await queue.mark_killed(job_id, token)
        print("done", flush=True)  # one job through: the test kills after a few of these


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
