"""A whole population in memory, one record per patient: a thin wrapper over the partitioning.

`read_population` partitions the export into one partition in a temporary directory
(`cds_service.population.partition`, so the one routing of `cds_service.bulk.routing` applies:
Patient by id, `subject`/`patient`/`beneficiary`, an Encounter's patient for a resource that
names only it) and reads it back into a dict. Fine for a few hundred patients; a population
that does not fit in memory is read partition by partition with `read_partition`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.population.partition import partition, read_partition, read_shared

__all__ = ["Population", "read_population"]


@dataclass(slots=True)
class Population:
    """Each patient's resources (the Patient first), and what could not be routed."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    shared: list[dict[str, Any]] = field(default_factory=list)  # see bulk.routing.SHARED_TYPES
    malformed: list[str] = field(default_factory=list)  # `file:line: why`
    unrouted: int = 0  # resources that name no patient


def read_population(directory: Path) -> Population:
    """Every patient's record from the NDJSON files (or FHIR Bundles) of `directory`."""
    with tempfile.TemporaryDirectory(prefix="cds-population-") as work:
        layout = partition(directory, work, 1, compresslevel=1)
        return Population(
            records=dict(read_partition(work, 0, layout=layout)),
            shared=list(read_shared(work, layout=layout)),
            malformed=list(layout.malformed),
            unrouted=layout.unrouted,
        )
