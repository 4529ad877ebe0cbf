"""Synthetic populations resampled from a real export: `cds-service population generate`.

    generate(Path("synthea-55-patients"), Path("out"), patients=2000, seed=7)

The source (an NDJSON export or a directory of Bundles) is first partitioned into one partition
(`cds_service.population.partition`), so its records are read one at a time. Synthetic patient
``k`` (0 ≤ k < N) is a copy of template ``order[k mod M]`` (the M source patients that have a
Patient resource, in an order shuffled by the seed); the templates are visited once each, in
partition order, and each writes all its copies before the next is read. Each copy, with a
random generator seeded by (seed, k):

- gets new ids: the Patient's and those of all its resources (encounters, observations…),
  derived from (seed, k, old id), and every reference to them rewritten — ``Type/id``,
  ``urn:uuid:id``, absolute URLs, and any identifier that held an id;
- has every date shifted by the same random number of days (between three years back and one
  forward, never zero): ``date``, ``dateTime``, ``instant`` and so ``Period`` bounds keep their
  format, precision, time of day and zone (a ``YYYY-MM`` or ``YYYY`` date, recognised only
  under a date-like key, moves by whole months or years), so the intervals between a patient's
  encounters are those of the template;
- has its Observations' numeric values (``valueQuantity``, and in ``component``) jittered by
  up to `JITTER` either way, at the precision they were written with;
- has new names (from a list of common names), and the digits of its identifiers, telephone
  numbers and address lines redrawn; references' ``display`` of the patient's name follow.

The copying itself is `cds_service.population.synthetic`: each template is compiled once
into literal JSON and tokens, and a copy only renders the tokens.

Shared resources (Organization, Practitioner, …) are written once, unchanged. The output is gzip
NDJSON by resource type (`TypedNdjsonWriter`: several files per type when large) and a Bulk-style
``manifest.json``. Memory holds one template record (as JSON lines) and the writers' buffers:
it does not depend on N. The same source, N and seed give the same files.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from cds_service.population.partition import partition, read_partition, read_shared
from cds_service.population.synthetic import Template
from cds_service.population.writer import DEFAULT_MAX_LINES, TypedNdjsonWriter

__all__ = ["GenerateSummary", "generate"]


@dataclass(frozen=True, slots=True)
class GenerateSummary:
    """What `generate` wrote."""

    patients: int
    resources: int  # patient resources written (the shared ones not counted)
    shared: int
    templates: int  # source patients resampled
    files: int  # NDJSON files written
    skipped: int  # resources whose resourceType cannot name a file


def generate(
    source: Path,
    out: Path,
    patients: int,
    *,
    seed: int = 0,
    max_lines: int = DEFAULT_MAX_LINES,
    compresslevel: int = 6,
    progress: Callable[[str], None] | None = None,
) -> GenerateSummary:
    """Write `patients` synthetic patients resampled from the export in `source` into `out`."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    with tempfile.TemporaryDirectory(prefix="cds-generate-") as work:
        layout = partition(source, work, 1, compresslevel=1)
        templates = layout.patients - sum(p.without_patient for p in layout.partitions)
        if templates == 0:
            raise ValueError(f"{source}: no Patient to resample")
        order = list(range(templates))
        random.Random(seed).shuffle(order)
        first_copy = {template: position for position, template in enumerate(order)}
        counts = {"written": 0, "skipped": 0, "shared": 0, "done": 0}

        def emit(writer: TypedNdjsonWriter, resource_type: str, line: bytes, kind: str) -> None:
            try:
                writer.write(resource_type, line)
                counts[kind] += 1
            except ValueError:
                counts["skipped"] += 1

        with TypedNdjsonWriter(out, max_lines=max_lines, compresslevel=compresslevel) as writer:
            for resource in read_shared(work, layout=layout):
                emit(writer, resource["resourceType"], orjson.dumps(resource), "shared")
            number = -1
            for _, record in read_partition(work, 0, layout=layout):
                if record[0].get("resourceType") != "Patient":
                    continue
                number += 1
                if first_copy[number] >= patients:  # fewer patients than templates
                    continue
                template = Template.of(record)
                del record
                for k in range(first_copy[number], patients, templates):
                    for resource_type, line in template.render(seed, k):
                        emit(writer, resource_type, line, "written")
                    counts["done"] += 1
                    if progress is not None and counts["done"] % 100 == 0:
                        progress(f"{counts['done']}/{patients} patients")
            writer.write_manifest(
                request=f"cds-service population generate --patients {patients} --seed {seed}",
                transaction_time=_transaction_time(source),
            )
            files = len(writer.files)
    return GenerateSummary(
        patients=patients,
        resources=counts["written"],
        shared=counts["shared"],
        templates=min(templates, patients),
        files=files,
        skipped=counts["skipped"],
    )


def _transaction_time(source: Path) -> str | None:
    """The source export's transactionTime (so the same inputs give the same manifest)."""
    try:
        manifest = orjson.loads((source / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    value = manifest.get("transactionTime") if isinstance(manifest, dict) else None
    return value if isinstance(value, str) else None
