"""Group commit: writes that callers of one process ask for at the same time, done
together in one round trip.

The first write goes out at once (after an optional linger, for company); those
asked for while it is under way go out together in the next. A quiet process waits
for nothing, a busy one sends one write for many callers. Each caller gets its own
item's result, or the error of the write that carried it. Used for a worker's
completes (`monq.queue.worker_actions`) and for the events of concurrent enqueues
(`monq.core.store.events`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """`write` takes the items waiting and returns a result for each, in order (an
    exception among them goes to that item's caller alone); `linger` says how long
    each write first waits for other items to join it."""

    def __init__(self, write: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
                 *, linger: Callable[[], float] = lambda: 0.0) -> None:
        self._write = write
        self._linger = linger
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.last_write_s = 0.0  # how long the last write took

    async def submit(self, item: T) -> R:
        """Write `item` with the others waiting; its result once written."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_all())
        return await done

    async def _write_all(self) -> None:
        while self._waiting:
            linger_s = self._linger()
            if linger_s > 0:
                await asyncio.sleep(linger_s)
            batch, self._waiting = self._waiting, []
            started = time.monotonic()
            try:
                results = await self._write([item for item, _ in batch])
            except BaseException as exc:  # each caller of the batch gets it
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.last_write_s = time.monotonic() - started
            for (_, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)
