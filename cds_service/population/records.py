"""Reading a Bulk Data export (NDJSON, plain or gzip, several files per type) into one record
per patient.

Every resource is routed to its patient: a Patient by its id; others by `subject`, `patient` or
`beneficiary` (a `Patient/` or `urn:uuid:` reference); a resource that names only an encounter
follows that Encounter's patient. A malformed line is reported with `file:line` and skipped; a
resource with no patient is counted and skipped. The records are held in memory (a few hundred
patients; population-scale partitioning is the population engine's job).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["SHARED", "Population", "read_population"]

_PATIENT_FIELDS = ("subject", "patient", "beneficiary")
# Resources no one patient owns (Organization, Practitioner, …): kept once, beside the records.
SHARED = frozenset(
    {"Organization", "Practitioner", "PractitionerRole", "Location", "Medication", "Substance"}
)


@dataclass(slots=True)
class Population:
    """Each patient's resources (the Patient first), and what could not be routed."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    shared: list[dict[str, Any]] = field(default_factory=list)  # see SHARED
    malformed: list[str] = field(default_factory=list)  # `file:line: why`
    unrouted: int = 0  # resources that name no patient


def _open(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _files(directory: Path) -> list[Path]:
    found = sorted(
        p for p in directory.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")) and p.is_file()
    )
    if not found:
        raise FileNotFoundError(f"{directory}: no .ndjson or .ndjson.gz files")
    return found


def _lines(directory: Path, population: Population) -> Iterator[dict[str, Any]]:
    for path in _files(directory):
        with _open(path) as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    population.malformed.append(f"{path}:{number}: invalid JSON: {exc.msg}")
                    continue
                if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
                    population.malformed.append(f"{path}:{number}: not a FHIR resource")
                    continue
                yield value


def _reference_id(value: Any, prefix: str) -> str | None:
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        return None
    reference: str = value["reference"]
    if reference.startswith("urn:uuid:"):
        return reference.removeprefix("urn:uuid:")
    if reference.startswith(prefix):
        return reference.removeprefix(prefix)
    return None


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        ident = resource.get("id")
        return ident if isinstance(ident, str) else None
    for name in _PATIENT_FIELDS:
        found = _reference_id(resource.get(name), "Patient/")
        if found:
            return found
    return None


def read_population(directory: Path) -> Population:
    """Every patient's record from the NDJSON files of `directory`."""
    population = Population()
    waiting: list[dict[str, Any]] = []  # resources that name only an encounter
    encounters: dict[str, str] = {}
    for resource in _lines(directory, population):
        if resource["resourceType"] in SHARED:
            population.shared.append(resource)
            continue
        patient = _patient_of(resource)
        if patient is None:
            waiting.append(resource)
            continue
        if resource["resourceType"] == "Encounter" and isinstance(resource.get("id"), str):
            encounters[resource["id"]] = patient
        record = population.records.setdefault(patient, [])
        if resource["resourceType"] == "Patient":
            record.insert(0, resource)
        else:
            record.append(resource)
    for resource in waiting:
        encounter = _reference_id(
            resource.get("encounter") or resource.get("context"), "Encounter/"
        )
        patient = encounters.get(encounter or "")
        if patient is None:
            population.unrouted += 1
        else:
            population.records.setdefault(patient, []).append(resource)
    return population
