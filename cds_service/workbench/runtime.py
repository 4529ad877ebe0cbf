"""What the workbench keeps for an app: the sample population, the simulations store, limits.

The playground's work (linting, testing, evaluating and simulating drafts) is CPU work that runs
in worker threads, never on the event loop that answers EHRs; at most `PLAYGROUND_JOBS` run at
once per process and one simulation at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from cds_service.config import Settings
from cds_service.workbench.population import SamplePopulation
from cds_service.workbench.simulations import SimulationStore

__all__ = ["PLAYGROUND_JOBS", "WorkbenchRuntime"]

PLAYGROUND_JOBS = 2
T = TypeVar("T")


def _in_own_loop(job: Callable[[], Awaitable[T]]) -> T:
    async def run() -> T:
        return await job()

    return asyncio.run(run())


class WorkbenchRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.population: SamplePopulation | None = None
        if settings.workbench_population is not None:
            self.population = SamplePopulation(
                settings.workbench_population, settings.workbench_workdir
            )
        self._store: SimulationStore | None = None
        self._store_lock = asyncio.Lock()
        self._jobs = asyncio.Semaphore(PLAYGROUND_JOBS)
        self._simulating = asyncio.Semaphore(1)
        self.tests_cache: dict[tuple[Any, ...], dict[str, Any] | None] = {}

    @property
    def population_name(self) -> str | None:
        source = self.settings.workbench_population
        return Path(source).name if source is not None else None

    async def simulations(self) -> SimulationStore:
        async with self._store_lock:
            if self._store is None:
                self._store = await SimulationStore.open(self.settings.database_url)
            return self._store

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in a worker thread, within the playground's limit."""
        async with self._jobs:
            return await asyncio.to_thread(partial(work, *args))

    async def run_async(self, job: Callable[[], Awaitable[T]]) -> T:
        """An async job (rule evaluation) on its own event loop in a worker thread."""
        async with self._jobs:
            return await asyncio.to_thread(_in_own_loop, job)

    async def simulate(self, work: Callable[..., T], *args: Any) -> T:
        """A simulation (one at a time per process)."""
        async with self._simulating:
            return await asyncio.to_thread(partial(work, *args))
