"""Maintenance: pausing every worker's claims, or the claims of some job names."""

from __future__ import annotations

from dataclasses import dataclass

from monq.core.store.jobs import JobStore


@dataclass(frozen=True)
class Maintenance:
    global_pause: bool
    paused_names: frozenset[str]


class MaintenanceSwitch:
    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    async def maintenance(self) -> Maintenance:
        doc = await self.jobs.maintenance()
        return Maintenance(bool(doc.get("global")), frozenset(doc.get("names") or ()))

    async def set_maintenance(self, on: bool) -> None:
        await self.jobs.set_global_pause(on)

    async def pause_name(self, name: str) -> None:
        await self.jobs.pause_name(name)

    async def resume_name(self, name: str) -> None:
        await self.jobs.resume_name(name)
