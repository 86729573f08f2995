"""Long-running services (API server, worker, summarizer, ...) and running them.

A service is an object with a ``name`` and ``async run(stop)`` that returns
once ``stop`` is set. `run_services` runs several in one event loop until
SIGINT or SIGTERM; a second signal ends the process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from typing import Protocol

from monq.core.errors import DatabaseUnavailable
from monq.core.store import Store

log = logging.getLogger("monq.services")

RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0


class Service(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


async def wait_for_database(store: Store, stop: asyncio.Event | None = None,
                            name: str = "monq") -> bool:
    """Ping until MongoDB answers, backing off and logging; False if stopped first."""
    delay = RETRY_MIN_S
    while True:
        try:
            await store.ping()
            return True
        except DatabaseUnavailable as exc:
            log.warning("%s: %s; retrying in %.1fs", name, exc, delay,
                        extra={"action": "database_retry", "delay_s": delay})
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return False
        delay = min(delay * 2, RETRY_MAX_S)


def install_signal_handlers(stop: asyncio.Event,
                            on_forced_exit: Callable[[], None] | None = None) -> None:
    """First SIGINT/SIGTERM sets `stop`; a second one exits at once (after
    `on_forced_exit`, which stops what must not outlive the process)."""
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: stopping now", extra={"action": "forced_exit"})
            if on_forced_exit is not None:
                on_forced_exit()
            os._exit(128 + signum)
        log.info("stopping (signal %d)", signum, extra={"action": "stopping"})
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handle, signum)


async def run_services(services: Sequence[Service], stop: asyncio.Event) -> None:
    """Run every service until `stop` is set or one of them fails; the failure of one
    (also one noticed while stopping, such as a loop that could not go on) stops the
    others and is raised, so the process exits non-zero with its message."""
    tasks = [asyncio.create_task(s.run(stop), name=s.name) for s in services]
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result,
                                                                asyncio.CancelledError):
            raise result
