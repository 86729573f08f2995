"""Job types for tests/test_testing.py (importable by their qualified names)."""

from __future__ import annotations

import asyncio
from typing import Any

from monq.queue.job import Job, Param


class Adder(Job):
    """Adds two numbers, saying so in its log and progress."""

    params = {"a": Param(int, required=True), "b": Param(int, default=1)}

    def execute(self, a: int, b: int = 1) -> dict[str, Any]:
        self.log.info("adding %s and %s", a, b)
        print("printed too")
        self.progress(0.5, "half way")
        return {"sum": a + b}


class AsyncAdder(Job):
    async def execute(self, a: int = 0) -> int:
        await asyncio.sleep(0)
        return a + 1


class Broken(Job):
    attempts = 1

    def execute(self, **_: Any) -> None:
        raise ValueError("the data is not there")


class Waiting(Job):
    def execute(self, **_: Any) -> None:
        self.defer("try later", delay_s=60)
