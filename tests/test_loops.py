"""The one periodic-loop helper: log, back off, go on; stop the daemon when a loop
cannot go on."""

from __future__ import annotations

import asyncio

import pytest

from monq.core.errors import ConfigError, DatabaseUnavailable
from monq.core.loops import LoopFailed, periodic, supervise
from monq.core.services import run_services

FAST = {"interval_s": 0.001, "backoff_max_s": 0.01}


async def test_a_loop_goes_on_after_errors_and_stops_with_stop() -> None:
    stop = asyncio.Event()
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls < 20:
            raise DatabaseUnavailable("gone")  # many: a database error is never fatal
        stop.set()

    await periodic("test loop", body, stop, **FAST)
    assert calls == 20


async def test_a_loop_that_keeps_crashing_fails_with_its_name_and_error() -> None:
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("lease")

    with pytest.raises(LoopFailed, match=r"test loop crashed 3 times in a row, last with "
                                         r"KeyError: 'lease'"):
        await periodic("test loop", body, asyncio.Event(), max_crashes=3, **FAST)
    assert calls == 3


async def test_crashes_count_only_in_a_row() -> None:
    stop = asyncio.Event()
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls == 12:
            stop.set()
        elif calls % 2:
            raise ValueError("now and then")

    await periodic("test loop", body, stop, max_crashes=2, **FAST)
    assert calls == 12


async def test_a_configuration_error_fails_at_once() -> None:
    async def body() -> None:
        raise ConfigError("bad key")

    with pytest.raises(LoopFailed, match="bad key"):
        await periodic("test loop", body, asyncio.Event(), **FAST)


async def test_a_failed_loop_stops_its_service_and_the_others() -> None:
    class Looping:
        name = "looping"

        async def run(self, stop: asyncio.Event) -> None:
            async def body() -> None:
                raise RuntimeError("broken")

            task = asyncio.create_task(periodic("its loop", body, stop, max_crashes=2,
                                                **FAST))
            await supervise([task], stop)

    class Waiting:
        name = "waiting"
        stopped = False

        async def run(self, stop: asyncio.Event) -> None:
            await stop.wait()
            self.stopped = True

    other = Waiting()
    with pytest.raises(LoopFailed, match="its loop crashed 2 times"):
        await run_services([other, Looping()], asyncio.Event())
    assert other.stopped
