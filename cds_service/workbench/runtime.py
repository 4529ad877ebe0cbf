"""What the workbench keeps for an app: the sample population, the simulations store, its workers.

The playground's work (linting, testing, evaluating and simulating drafts) is CPU work. It runs
in a small pool of worker processes (`PLAYGROUND_JOBS`, started on first use with `spawn`), never
on the event loop or in a thread of the process that answers EHRs: an author typing costs the
hooks no interpreter lock. At most one simulation runs at a time. A refusal in a worker
(`jobs.JobRefused`) is answered with its status.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from cds_service.config import Settings
from cds_service.workbench.jobs import JobRefused, ready
from cds_service.workbench.population import SamplePopulation
from cds_service.workbench.simulations import SimulationStore

__all__ = ["PLAYGROUND_JOBS", "WorkbenchRuntime"]

PLAYGROUND_JOBS = 2
T = TypeVar("T")


class WorkbenchRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.population: SamplePopulation | None = None
        if settings.workbench_population is not None:
            self.population = SamplePopulation(
                settings.workbench_population, settings.workbench_workdir
            )
        self._prepared = False
        self._prepare_lock = asyncio.Lock()
        self._store: SimulationStore | None = None
        self._store_lock = asyncio.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._jobs = asyncio.Semaphore(PLAYGROUND_JOBS)
        self._simulating = asyncio.Semaphore(1)
        self.tests_cache: dict[tuple[Any, ...], dict[str, Any] | None] = {}

    @property
    def population_name(self) -> str | None:
        source = self.settings.workbench_population
        return Path(source).name if source is not None else None

    async def population_paths(self) -> tuple[Path, Path] | None:
        """(source, work directory) of the sample population, partitioned once (here, so two
        workers never partition it at the same time); None without one."""
        if self.population is None:
            return None
        async with self._prepare_lock:
            if not self._prepared:
                await asyncio.to_thread(self.population.patients)
                self._prepared = True
        return self.population.source, self.settings.workbench_workdir

    async def simulations(self) -> SimulationStore:
        async with self._store_lock:
            if self._store is None:
                self._store = await SimulationStore.open(self.settings.database_url)
            return self._store

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                PLAYGROUND_JOBS, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def _submit(self, work: Callable[..., T], args: tuple[Any, ...]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), work, *args)
        except BrokenProcessPool:
            self._pool = None  # a worker died (killed, out of memory): start afresh next time
            raise JobRefused(503, "the playground's worker stopped; try again") from None

    def warm(self) -> None:
        """Start the workers now (the playground page opened): its first lint is then quick."""
        pool = self._executor()
        for _ in range(PLAYGROUND_JOBS):
            pool.submit(ready)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in a worker process, within the playground's limit."""
        async with self._jobs:
            return await self._submit(work, args)

    async def simulate(self, work: Callable[..., T], *args: Any) -> T:
        """A simulation in a worker process (one at a time)."""
        async with self._simulating, self._jobs:
            return await self._submit(work, args)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._store is not None:
            await self._store.close()
            self._store = None
