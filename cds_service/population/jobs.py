"""The population jobs: a simulation of every partition, run on the engine, merged into one report.

`run_simulation` partitions the source into the work directory (unless `--resume` finds the
same partitioning there), runs `simulate_partition` for every partition on Dask, and merges the
partitions' reports. A partition's task streams its patients one at a time (`read_partition`),
so a worker holds one patient's record, the services and the partition's counts.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds_service.population.engine import Cluster, job_key, run_job
from cds_service.population.layout import Layout, PartitionError, read_layout
from cds_service.population.partition import partition, read_partition, read_shared
from cds_service.population.progress import Progress
from cds_service.population.report import Report
from cds_service.population.simulate import Options, services_for, simulate_record

__all__ = [
    "Source",
    "prepare",
    "reusable_layout",
    "run_partition_job",
    "run_simulation",
    "shared_for_records",
    "simulate_partition",
]

#: Shared resources a patient's record may point to and the rules and scores read
#: (medicationReference).
_SHARED_FOR_RECORDS = frozenset({"Medication"})


@dataclass(frozen=True, slots=True)
class Source:
    """Where the population comes from and how it is laid out for the engine."""

    path: Path
    workdir: str
    partitions: int


@functools.cache
def shared_for_records(workdir: str) -> tuple[dict[str, Any], ...]:
    """The shared resources the records need (Medication), read once per worker process."""
    return tuple(r for r in read_shared(workdir) if r.get("resourceType") in _SHARED_FOR_RECORDS)


def simulate_partition(workdir: str, index: int, *, options: Options) -> dict[str, Any]:
    """One partition's report (JSON), its patients simulated one at a time."""
    services = services_for(options.rules_dir, options.builtins)
    shared = list(shared_for_records(workdir))
    report = options.report()

    async def run() -> None:
        for patient_id, record in read_partition(workdir, index):
            await simulate_record(services, patient_id, record + shared, options, report)

    asyncio.run(run())
    return report.to_json()


def reusable_layout(source: Source) -> Layout | None:
    """The layout already in the work directory when it has the partitions asked for."""
    try:
        layout = read_layout(source.workdir)
    except (OSError, ValueError, PartitionError):  # none, damaged, or another release's
        return None
    return layout if layout.count == source.partitions else None


def prepare(source: Source, *, resume: bool, say: Callable[[str], None]) -> Layout:
    """The partitioned population: reused when resuming over the same partitioning."""
    if resume:
        found = reusable_layout(source)
        if found is not None:
            say(f"reusing the {found.count} partitions in {source.workdir}")
            return found
    say(f"partitioning {source.path} into {source.partitions} partitions in {source.workdir}")
    return partition(source.path, source.workdir, source.partitions)


def run_partition_job(
    name: str,
    source: Source,
    parameters: dict[str, Any],
    task: Callable[[str, int], dict[str, Any]],
    *,
    cluster: Cluster,
    resume: bool = False,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[dict[int, dict[str, Any]], Layout]:
    """`task(workdir, index)` for every partition of the source (partitioned first, or reused
    when resuming); the results by partition, and the layout. `parameters` name the job."""
    layout = prepare(source, resume=resume, say=say)
    key = job_key(name, {**parameters, "source": str(source.path), "partitions": layout.count})
    say(f"{name}: {layout.count} partitions on {cluster.describe()}")
    results = run_job(
        key,
        source.workdir,
        range(layout.count),
        functools.partial(task, source.workdir),
        cluster=cluster,
        resume=resume,
        progress=progress,
    )
    return results, layout


def run_simulation(
    source: Source,
    options: Options,
    *,
    cluster: Cluster,
    resume: bool = False,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[Report, Layout]:
    """The whole population's report, and the layout it was read from (what was skipped)."""
    services_for(options.rules_dir, options.builtins)  # fail on broken rules before any work
    results, layout = run_partition_job(
        "simulate",
        source,
        options.describe(),
        functools.partial(simulate_partition, options=options),
        cluster=cluster,
        resume=resume,
        progress=progress,
        say=say,
    )
    report = options.report()
    for index in sorted(results):
        report.merge(Report.from_json(results[index]))
    return report, layout
