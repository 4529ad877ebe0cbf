"""The workbench's sample population (`CDS_WORKBENCH_POPULATION`): patients to try rules on.

A Bulk Data export or a directory of FHIR Bundles (the formats `rules simulate` reads), partitioned
once by the population engine into the workbench's work directory and read from there: the
patient list from the Patient files, one patient's record from its partition, and a whole-population
simulation of a rules directory on Dask (one local worker: the service's own CPU is for hooks).
The population is never held in memory; only the patient list (at most `MAX_LISTED`) is kept.
Its records are patient data: nothing from them is logged.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cds_service.population.engine import Cluster
from cds_service.population.jobs import Source, prepare, run_simulation, shared_for_records
from cds_service.population.layout import Layout, partition_of
from cds_service.population.moments import SIMULATED, Moment
from cds_service.population.partition import read_partition
from cds_service.population.report import SimulationReport
from cds_service.population.simulate import Options, calls_of, services_for

__all__ = ["MAX_LISTED", "PatientEntry", "SamplePopulation"]

#: Patients the playground lists (a sample population is small; a larger one is cut here).
MAX_LISTED = 500
PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class PatientEntry:
    id: str
    name: str
    gender: str
    birth_date: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "name": self.name,
            "gender": self.gender,
            "birthDate": self.birth_date,
        }


def _name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        if not isinstance(name, dict):
            continue
        if isinstance(name.get("text"), str):
            return str(name["text"])
        given = " ".join(g for g in name.get("given") or [] if isinstance(g, str))
        family = name.get("family") if isinstance(name.get("family"), str) else ""
        if given or family:
            return f"{given} {family}".strip()
    return "(no name)"


def _fingerprint(source: Path) -> str:
    """Names, sizes and modification times of the source's files: a changed export is
    partitioned again."""
    digest = hashlib.sha256(str(source.resolve()).encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(source)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


class SamplePopulation:
    """One sample population, partitioned on first use (thread safe; blocking: call it from a
    worker thread)."""

    def __init__(self, source: Path, workdir: Path) -> None:
        self.source = source
        self._root = workdir
        self._lock = threading.Lock()
        self._layout: Layout | None = None
        self._workdir: Path | None = None
        self._patients: list[PatientEntry] | None = None

    def _prepared(self) -> tuple[Path, Layout]:
        with self._lock:
            if self._layout is None or self._workdir is None:
                workdir = self._root / f"population-{_fingerprint(self.source)}"
                workdir.mkdir(parents=True, exist_ok=True)
                where = Source(self.source, str(workdir), PARTITIONS)
                self._layout = prepare(where, resume=True, say=lambda _: None)
                self._workdir = workdir
            return self._workdir, self._layout

    def patients(self) -> list[PatientEntry]:
        """The population's patients by name (at most MAX_LISTED)."""
        if self._patients is None:
            workdir, layout = self._prepared()
            found: list[PatientEntry] = []
            for index in range(layout.count):
                for patient_id, record in read_partition(
                    str(workdir), index, layout=layout, types=("Patient",)
                ):
                    patient = record[0] if record else {}
                    found.append(
                        PatientEntry(
                            patient_id,
                            _name(patient),
                            str(patient.get("gender") or ""),
                            str(patient.get("birthDate") or ""),
                        )
                    )
            found.sort(key=lambda p: (p.name.lower(), p.id))
            self._patients = found[:MAX_LISTED]
        return self._patients

    def record(self, patient_id: str) -> list[dict[str, Any]] | None:
        """One patient's whole record (and the shared Medications), or None when unknown."""
        workdir, layout = self._prepared()
        index = partition_of(patient_id, layout.count)
        for found, record in read_partition(str(workdir), index, layout=layout):
            if found == patient_id:
                return record + list(shared_for_records(str(workdir)))
        return None

    def moment(self, patient_id: str, hook: str, at: datetime | None = None) -> Moment | None:
        """The call `rules simulate` makes for `hook` on this patient (None: no such call, e.g.
        no encounter), or None when the patient is unknown."""
        record = self.record(patient_id)
        if record is None:
            return None
        options = Options(rules_dir="", hooks=(hook,), at=at)
        found = calls_of(patient_id, record, options)
        return found[-1] if found else None

    def simulate(self, rules_dir: Path, hook: str) -> SimulationReport:
        """`rules simulate` of `rules_dir` (no built-in services) on this population, one hook."""
        if hook not in SIMULATED:
            raise ValueError(f"hook '{hook}' is not one rules simulate derives calls for")
        workdir, _ = self._prepared()
        options = Options(rules_dir=str(rules_dir), hooks=(hook,), builtins=False)
        try:
            report, _ = run_simulation(
                Source(self.source, str(workdir), PARTITIONS),
                options,
                cluster=Cluster(workers=1),
                resume=True,
            )
        finally:
            shutil.rmtree(workdir / "results", ignore_errors=True)
            services_for.cache_clear()  # the draft's directory is gone: do not keep its services
        return report.model()
