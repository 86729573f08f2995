"""Commands that keep going until Ctrl-C (``jobs --watch``, ``events``): a stop event
set by SIGINT or SIGTERM, after which they end normally with exit code 0."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import TextIO

from monq.cli.output import CLEAR_SCREEN


def stop_on_signals() -> asyncio.Event:
    """An event SIGINT or SIGTERM sets (in the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def pause(stop: asyncio.Event, interval_s: float) -> None:
    """Wait `interval_s` or until stopped, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), interval_s)


async def redraw(out: TextIO, render: Callable[[], Awaitable[str]], interval_s: float
                 ) -> int:
    """Print what `render` makes every `interval_s` until Ctrl-C: redrawn in place on a
    terminal, one frame after another (a blank line between) otherwise."""
    stop = stop_on_signals()
    tty = out.isatty()
    while not stop.is_set():
        frame = await render()
        print((CLEAR_SCREEN + frame) if tty else frame + "\n", file=out, flush=True)
        await pause(stop, interval_s)
    return 0
