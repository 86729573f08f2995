"""The one periodic-loop helper: every loop of every daemon (the worker's claim,
lease, sweep and watch loops, the summarizer, the scheduler, the notifier, the event
hub's source and user checks) runs through `periodic`, with one error policy:

- a `monq.Error` (the database went away, a write was refused) is logged as a
  warning; the loop backs off (doubling from its interval up to ``BACKOFF_MAX_S``)
  and goes on;
- any other exception is a bug: logged with its traceback, backed off the same
  way, and the loop goes on; after ``MAX_CRASHES`` of them in a row the loop cannot
  go on and raises `LoopFailed`, which stops its daemon (the process exits non-zero
  with that message) instead of leaving it half alive: a worker whose lease loop
  is dead would go on claiming jobs whose leases nobody renews;
- a `ConfigError` cannot get better by waiting: `LoopFailed` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from monq.core.errors import ConfigError, Error

log = logging.getLogger("monq.loops")

BACKOFF_MAX_S = 30.0
MAX_CRASHES = 5


class LoopFailed(Error):
    """A periodic loop cannot go on; its daemon stops."""


async def pause(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def periodic(name: str, body: Callable[[], Awaitable[float | None]],
                   stop: asyncio.Event | None, *, interval_s: float,
                   backoff_max_s: float = BACKOFF_MAX_S, max_crashes: int = MAX_CRASHES,
                   logger: logging.Logger | None = None) -> None:
    """Run `body` until `stop` is set (or the task is cancelled), waiting what it
    returns (None: `interval_s`) between runs; failures as the module says."""
    logger = logger or log
    delay = max(interval_s, 0.05)
    crashes = 0
    while stop is None or not stop.is_set():
        try:
            wait = await body()
        except ConfigError as exc:
            raise LoopFailed(f"{name} cannot go on: {exc}") from exc
        except Error as exc:
            logger.warning("%s failed: %s; again in %.1fs", name, exc, delay,
                           extra={"action": "loop_failed", "loop": name, "delay_s": delay})
            await pause(stop, delay)
            delay = min(delay * 2, backoff_max_s)
            continue
        except Exception as exc:
            crashes += 1
            if crashes >= max_crashes:
                logger.error("%s crashed %d times in a row (%s: %s); stopping", name,
                             crashes, type(exc).__name__, exc, exc_info=True,
                             extra={"action": "loop_stopped", "loop": name})
                raise LoopFailed(f"{name} crashed {crashes} times in a row, last with "
                                 f"{type(exc).__name__}: {exc}") from exc
            logger.error("%s crashed (%s: %s); again in %.1fs", name, type(exc).__name__,
                         exc, delay, exc_info=True,
                         extra={"action": "loop_crashed", "loop": name, "delay_s": delay})
            await pause(stop, delay)
            delay = min(delay * 2, backoff_max_s)
            continue
        crashes = 0
        delay = max(interval_s, 0.05)
        await pause(stop, interval_s if wait is None else wait)


async def supervise(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait until `stop` is set or one of `tasks` ends; a task that ended with an
    exception sets `stop` and raises it (the others are left to the caller)."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    for task in done:
        if task is not stopper and not task.cancelled() and task.exception() is not None:
            stop.set()
            raise task.exception()  # type: ignore[misc]
