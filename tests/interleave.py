"""Run another actor's operation at a chosen point inside a queue operation.

`Interleaved` stands in for a `JobStore` (every call goes to the real one, on the
real server) and, just before its store call number `at`, awaits `action`: a
user's kill landing between a worker's read and its write, for example. Not a
mock: it only chooses when the other actor's real operation runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from monq.core.store.jobs import JobStore


class Interleaved:
    def __init__(self, jobs: JobStore, at: int,
                 action: Callable[[], Awaitable[Any]]) -> None:
        self._jobs = jobs
        self._at = at
        self._action: Callable[[], Awaitable[Any]] | None = action
        self.calls = 0
        self.result: Any = None
        self.error: BaseException | None = None

    async def run_action(self) -> None:
        """The other actor's operation (once); its result or error is kept."""
        action, self._action = self._action, None
        if action is None:
            return
        try:
            self.result = await action()
        except Exception as exc:  # the test decides whether a refusal was right
            self.error = exc

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._jobs, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self._at:
                await self.run_action()
            return await attribute(*args, **kwargs)
        return call
