"""A thin synchronous facade over the async `Queue` and the read side (`JobReads`:
``get``, ``listing``, ``log``, ...), for scripts and job code::

    with SyncQueue.connect(config) as queue:
        job = queue.enqueue("monq.jobs.example.DummyJob", {"sleep": 1})
        lines, total = queue.log(job.id)

It runs the async API on a private event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from monq.core.config import Config
from monq.core.store import Store
from monq.queue.enqueue import Origin
from monq.queue.queue import Queue
from monq.queue.reads import JobReads

T = TypeVar("T")


class SyncQueue:
    def __init__(self, config: Config, *, author: str | None = None,
                 origin: str = "script") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="monq-sync-queue")
        self._thread.start()
        self._store = self._run(self._make_store(config))
        self.queue = Queue(self._store, config, author=author,
                           origin=Origin(by=author, origin=origin), lazy_enqueue=True)
        self.reads = JobReads(self._store)

    @classmethod
    def connect(cls, config: Config, **kwargs: Any) -> SyncQueue:
        return cls(config, **kwargs)

    @staticmethod
    async def _make_store(config: Config) -> Store:
        return Store(config.mongodb.url, timeout_s=config.mongodb.connect_timeout_s)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        # the operations first, then the questions the read side answers
        owner = self.queue if hasattr(self.queue, name) else self.reads
        method = getattr(owner, name)
        if not asyncio.iscoroutinefunction(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        return call

    def close(self) -> None:
        self._run(self._store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
