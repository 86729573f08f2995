"""Executor processes, seen from the worker: started ahead, reused job after job,
replaced when one dies or is killed.

Each `Executor` owns one process (multiprocessing's ``spawn`` context: never a
fork of the worker's running event loop) and the worker's end of its pipe, read
without threads through the event loop's reader callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import sysconfig
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from monq.worker.executor_process import executor_main

log = logging.getLogger("monq.worker")

START_TIMEOUT_S = 60.0
_context = multiprocessing.get_context("spawn")
_SCRIPTS = Path(sysconfig.get_path("scripts")).resolve()  # where console scripts live


@contextlib.contextmanager
def _console_script_hidden() -> Iterator[None]:
    """Keep a spawned executor from running the parent's main script again when that
    script is an installed console script (``monq``, ``pytest``). Spawn re-runs the
    main script in the child so that what it defines resolves there; a console script
    defines nothing, it only imports its package: the whole CLI for ``monq worker``,
    which doubled an executor's start (0.28 s instead of 0.14 s here), paid again for
    every executor replaced after a kill or a crash. A script of the user's own (jobs
    defined in it) is still run again. The executor's target is importable by name."""
    main = sys.modules["__main__"]
    path = main.__dict__.get("__file__")
    if getattr(main, "__spec__", None) is not None or not isinstance(path, str) \
            or Path(path).resolve().parent != _SCRIPTS:
        yield
        return
    del main.__file__  # spawn reads it while `start` prepares the child, synchronously
    try:
        yield
    finally:
        main.__file__ = path


class ExecutorDied(Exception):
    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"the job's process died (exit code {exitcode})")
        self.exitcode = exitcode


class Executor:
    def __init__(self) -> None:
        self.conn, child = _context.Pipe()
        self.process = _context.Process(target=executor_main, args=(child,), daemon=True,
                                        name="monq-executor")
        with _console_script_hidden():
            self.process.start()
        child.close()
        self.messages: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()
        self.killed = False
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._readable)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self.messages.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            self._detach()
            self.messages.put_nowait(None)

    def _detach(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())

    async def ready(self) -> None:
        message = await asyncio.wait_for(self.messages.get(), START_TIMEOUT_S)
        if message is None or message[0] != "ready":
            raise ExecutorDied(self.process.exitcode)

    async def run(self, spec: dict[str, Any], on_message: Callable[[tuple[Any, ...]], None],
                  on_started: Callable[[datetime], Awaitable[None]]) -> tuple[Any, ...]:
        """Run a job; `on_started` is awaited with the time the process began it,
        progress, log and heartbeat messages go to `on_message`; returns the outcome."""
        try:
            self.conn.send(("run", spec))
        except OSError:
            raise ExecutorDied(self.process.exitcode) from None
        while True:
            message = await self.messages.get()
            if message is None:
                await asyncio.to_thread(self.process.join, 5)
                raise ExecutorDied(self.process.exitcode)
            if message[0] == "started":
                await on_started(message[1])
                continue
            if message[0] in ("progress", "log", "heartbeat"):
                on_message(message)
                continue
            return message

    async def kill(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s`."""
        self.killed = True
        if self.process.pid is None or not self.process.is_alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        await asyncio.to_thread(self.process.join, grace_s)
        if self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            await asyncio.to_thread(self.process.join, 5)

    async def close(self) -> None:
        self._detach()
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(("exit",))
            await asyncio.to_thread(self.process.join, 2)
            if self.process.is_alive():
                await self.kill(0.5)
        self.conn.close()
        self.process.close() if not self.process.is_alive() else None


class ExecutorPool:
    """`size` executors started ahead; `acquire` one, `release` it (or `discard` it
    when it died or was killed, and a fresh one takes its place)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: asyncio.Queue[Executor] = asyncio.Queue()
        self.all: set[Executor] = set()

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))

    async def _spawn(self) -> None:
        executor = Executor()
        self.all.add(executor)
        try:
            await executor.ready()
        except (ExecutorDied, TimeoutError):
            self.all.discard(executor)
            await executor.close()
            raise
        self.idle.put_nowait(executor)

    async def acquire(self) -> Executor:
        return await self.idle.get()

    def try_acquire(self) -> Executor | None:
        """An idle executor, or None (without waiting)."""
        try:
            return self.idle.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def release(self, executor: Executor) -> None:
        self.idle.put_nowait(executor)

    async def discard(self, executor: Executor, *, replace: bool = True) -> None:
        self.all.discard(executor)
        await executor.close()
        if not replace:
            return
        try:
            await self._spawn()
        except (ExecutorDied, TimeoutError) as exc:  # pragma: no cover - a broken install
            log.error("cannot start an executor: %s", exc, extra={"action": "executor_failed"})

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in list(self.all)), return_exceptions=True)
        self.all.clear()
