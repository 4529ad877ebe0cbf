"""Partitioning a population by patient: streaming sources, the layout, determinism, records
that match the in-memory reading, and memory that does not grow with the population."""

from __future__ import annotations

import gzip
import hashlib
import json
import tracemalloc
import uuid
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pytest

from cds_service.bulk.ndjson import NdjsonItem
from cds_service.bulk.routing import SHARED_TYPES, encounter_of, patient_of
from cds_service.population.generate import GenerateSummary
from cds_service.population.layout import LAYOUT_NAME, PartitionError, partition_of
from cds_service.population.partition import (
    Layout,
    partition,
    read_layout,
    read_partition,
    read_shared,
)
from cds_service.population.sources import bundle_source, open_source
from tests.conftest import FIXTURES
from tests.population.conftest import SYNTHEA_55

SYNTHEA_BUNDLES = FIXTURES / "fhir-r4" / "synthea"


def write_ndjson(path: Path, lines: list[Any]) -> None:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())


def gzip_lines(directory: Path) -> Iterator[bytes]:
    for path in sorted(directory.glob("*.ndjson.gz")):
        with gzip.open(path, "rb") as stream:
            yield from stream


def ref(text: str) -> dict[str, str]:
    return {"reference": text}


def records(workdir: str | Path, layout: Layout) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for index in range(layout.count):
        for patient, resources in read_partition(workdir, index, layout=layout):
            assert patient not in found, "a patient in two partitions, or twice in one"
            found[patient] = resources
    return found


def ids(resources: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in resources]


@pytest.fixture
def small_export(tmp_path: Path) -> Path:
    """Two patients, resources in every reference form, encounter-only resources whose encounter
    comes later in the reading, shared resources (one twice), bad lines."""
    export = tmp_path / "export"
    export.mkdir()
    write_ndjson(
        export / "AllergyIntolerance.000.ndjson",
        [
            {"resourceType": "AllergyIntolerance", "id": "a1", "patient": ref("urn:uuid:p2")},
            {"resourceType": "Observation", "id": "o-enc", "encounter": ref("Encounter/e1")},
            {"resourceType": "Observation", "id": "o-ctx", "context": ref("urn:uuid:e2")},
            {"resourceType": "Observation", "id": "o-lost", "encounter": ref("Encounter/nope")},
            {"resourceType": "Observation", "id": "o-none"},
            "{not json",
        ],
    )
    write_ndjson(
        export / "Encounter.000.ndjson.gz",
        [
            {"resourceType": "Encounter", "id": "e1", "subject": ref("Patient/p1")},
            {"resourceType": "Encounter", "id": "e2", "subject": ref("https://h/fhir/Patient/p2")},
        ],
    )
    write_ndjson(
        export / "Organization.000.ndjson",
        [
            {"resourceType": "Organization", "id": "org"},
            {"resourceType": "Organization", "id": "org", "name": "again"},
            {"resourceType": "Practitioner", "id": "doc"},
        ],
    )
    write_ndjson(
        export / "Patient.000.ndjson",
        [{"resourceType": "Patient", "id": "p2"}, '["x"]', {"resourceType": "Patient", "id": "p1"}],
    )
    write_ndjson(
        export / "Coverage.000.ndjson",
        [{"resourceType": "Coverage", "id": "c1", "beneficiary": ref("Patient/p1")}],
    )
    (export / "manifest.json").write_text('{"transactionTime": "2026-01-01T00:00:00Z"}')
    write_ndjson(export / "log.ndjson", [{"not": "a resource"}])
    return export


def test_every_resource_reaches_its_patient_with_the_patient_first(
    small_export: Path, tmp_path: Path
) -> None:
    layout = partition(small_export, tmp_path / "work", 3)
    found = records(tmp_path / "work", layout)
    # After the Patient, the types by name (each in reading order).
    assert ids(found["p1"]) == ["p1", "c1", "e1", "o-enc"]
    assert ids(found["p2"]) == ["p2", "a1", "e2", "o-ctx"]
    assert layout.unrouted == 2  # o-lost (unknown encounter) and o-none
    assert [r.get("name") for r in read_shared(tmp_path / "work")] == [None, None]
    assert [r["id"] for r in read_shared(tmp_path / "work")] == ["org", "doc"]
    assert layout.shared == 2
    for patient in ("p1", "p2"):
        info = layout.partitions[partition_of(patient, 3)]
        assert info.patients >= 1 and info.without_patient == 0
    assert (layout.patients, layout.resources) == (2, 8)


def test_malformed_lines_are_listed_with_file_and_line(small_export: Path, tmp_path: Path) -> None:
    layout = partition(small_export, tmp_path / "work", 2)
    assert layout.malformed_total == 2
    allergy = small_export / "AllergyIntolerance.000.ndjson"
    assert layout.malformed[0].startswith(f"{allergy}:6: invalid JSON (")
    assert (
        layout.malformed[1]
        == f"{small_export / 'Patient.000.ndjson'}:2: not a JSON object but an array"
    )
    assert read_layout(tmp_path / "work") == layout


def test_a_directory_of_bundles_is_read_entry_by_entry(tmp_path: Path) -> None:
    """The Synthea R4 transaction Bundles (references as urn:uuid), one patient a file, beside a
    summary that is not FHIR and a licence that is not JSON."""
    layout = partition(SYNTHEA_BUNDLES, tmp_path / "work", 2)
    bundles = sorted(p for p in SYNTHEA_BUNDLES.glob("*.json") if not p.name.startswith("_"))
    assert layout.patients == len(bundles) == 18
    assert layout.malformed == (f"{SYNTHEA_BUNDLES / '_SUMMARY.json'}: not a FHIR resource",)
    assert layout.unrouted == 0
    entries = sum(len(json.loads(p.read_bytes())["entry"]) for p in bundles)
    assert layout.resources + layout.shared <= entries  # shared ones once
    found = records(tmp_path / "work", layout)
    for patient, resources in found.items():
        assert resources[0] == {**resources[0], "resourceType": "Patient", "id": patient}
        assert all(patient_of(r) in (patient, None) for r in resources)


def test_bundle_kinds_and_broken_bundle_files(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "p"}
    observation = {"resourceType": "Observation", "id": "o", "subject": ref("Patient/p")}
    outcome = {"resourceType": "OperationOutcome"}
    documents: dict[str, Any] = {
        "a.json": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": patient}],
        },
        "b.json": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": observation, "search": {"mode": "match"}},
                {"resource": outcome, "search": {"mode": "outcome"}},
                {"fullUrl": "urn:uuid:x"},
            ],
        },
        "c.json": {"resourceType": "Bundle", "type": "history", "entry": []},
        "d.json": observation,
    }
    for name, document in documents.items():
        (tmp_path / name).write_text(json.dumps(document))
    (tmp_path / "e.json").write_text("{broken")
    (tmp_path / "manifest.json").write_text("{}")
    items = list(bundle_source(tmp_path))
    problems = [(i.source.rsplit("/", 1)[1], i.reason) for i in items if not hasattr(i, "resource")]
    assert problems[0] == ("b.json", "entry 3 holds no FHIR resource")
    assert problems[1] == ("c.json", "a 'history' Bundle is not read")
    assert problems[2][0] == "e.json" and problems[2][1].startswith("invalid JSON")
    assert [getattr(i, "resource", {}).get("id") for i in items if hasattr(i, "resource")] == [
        "p",
        "o",
        "o",
    ]


def test_a_directory_with_neither_ndjson_nor_bundles(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no \.ndjson or \.ndjson\.gz files"):
        open_source(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        open_source(tmp_path / "missing")


def test_the_same_input_gives_byte_identical_partitions(tmp_path: Path) -> None:
    first = partition(SYNTHEA_55, tmp_path / "one", 3)
    second = partition(SYNTHEA_55, tmp_path / "two", 3)
    assert first == second
    names = sorted(str(p.relative_to(tmp_path / "one")) for p in (tmp_path / "one").rglob("*"))
    assert names == sorted(
        str(p.relative_to(tmp_path / "two")) for p in (tmp_path / "two").rglob("*")
    )
    for name in names:
        if (tmp_path / "one" / name).is_file():
            one, two = (
                (tmp_path / "one" / name).read_bytes(),
                (tmp_path / "two" / name).read_bytes(),
            )
            assert one == two, name
    for info in first.partitions:
        assert [f.resource_type for f in info.files] == sorted(f.resource_type for f in info.files)
        assert sum(f.resources for f in info.files) == info.resources
        for file in info.files:
            data = (tmp_path / "one" / file.file).read_bytes()
            assert hashlib.sha256(data).hexdigest() == file.sha256


def test_a_memory_fsspec_work_directory(small_export: Path) -> None:
    workdir = f"memory://partition-test-{uuid.uuid4().hex}"
    try:
        layout = partition(small_export, workdir, 2)
        assert read_layout(workdir) == layout
        found = records(workdir, layout)
        assert sorted(found) == ["p1", "p2"] and ids(found["p1"])[0] == "p1"
        assert [r["id"] for r in read_shared(workdir)] == ["org", "doc"]
        fs = fsspec.filesystem("memory")
        assert fs.exists(f"{workdir}/{LAYOUT_NAME}")
    finally:
        fsspec.filesystem("memory").rm(workdir, recursive=True)


def _raw_lines(workdir: Path, file: str) -> Iterator[dict[str, Any]]:
    with gzip.open(workdir / file, "rb") as stream:
        for line in stream:
            yield orjson.loads(line)


def test_each_type_file_holds_runs_of_one_patient_by_id(tmp_path: Path) -> None:
    """Read each partition's files as plain NDJSON: in every type's file one run per patient,
    by patient id, each patient in the partition its id hashes to; one Patient each."""
    layout = partition(SYNTHEA_55, tmp_path / "work", 4)
    for info in layout.partitions:
        owners_by_type: dict[str, list[str | None]] = {}
        encounter_file = info.file_of("Encounter")
        assert encounter_file is not None
        encounters = {
            r["id"]: patient_of(r) for r in _raw_lines(tmp_path / "work", encounter_file.file)
        }
        for file in info.files:
            resources = list(_raw_lines(tmp_path / "work", file.file))
            assert len(resources) == file.resources
            assert {r["resourceType"] for r in resources} == {file.resource_type}
            owners = [patient_of(r) or encounters.get(encounter_of(r) or "") for r in resources]
            runs: list[str | None] = []
            for owner in owners:
                if not runs or runs[-1] != owner:
                    runs.append(owner)
            assert None not in runs and len(runs) == len(set(runs))
            named = [run for run in runs if run is not None]
            assert named == sorted(named)  # by patient id
            assert all(partition_of(p, 4) == info.index for p in named)
            owners_by_type[file.resource_type] = owners
        assert len(owners_by_type["Patient"]) == info.patients  # one Patient each


def test_reading_some_types_opens_only_their_files(tmp_path: Path) -> None:
    layout = partition(SYNTHEA_55, tmp_path / "work", 2)
    everything = records(tmp_path / "work", layout)
    wanted = {"Patient", "Condition"}
    for info in layout.partitions:  # what is not read need not even be there
        for file in info.files:
            if file.resource_type not in wanted:
                (tmp_path / "work" / file.file).unlink()
    some: dict[str, list[dict[str, Any]]] = {}
    for index in range(layout.count):
        some.update(read_partition(tmp_path / "work", index, layout=layout, types=wanted))
    assert sorted(some) == sorted(everything)
    for patient, resources in everything.items():
        assert some[patient] == [r for r in resources if r["resourceType"] in wanted]
    with pytest.raises(PartitionError, match="unreadable"):
        list(read_partition(tmp_path / "work", 0, layout=layout))


def _in_memory(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """What read_population did before the partitioning (one dict, the Patient inserted first,
    encounter-only resources appended last): the oracle."""
    found: dict[str, list[dict[str, Any]]] = {}
    waiting: list[dict[str, Any]] = []
    encounters: dict[str, str] = {}
    for line in gzip_lines(directory):
        resource = json.loads(line)
        if resource["resourceType"] in SHARED_TYPES:
            continue
        patient = patient_of(resource)
        if patient is None:
            waiting.append(resource)
            continue
        if resource["resourceType"] == "Encounter":
            encounters[resource["id"]] = patient
        record = found.setdefault(patient, [])
        if resource["resourceType"] == "Patient":
            record.insert(0, resource)
        else:
            record.append(resource)
    for resource in waiting:
        found[encounters[encounter_of(resource) or ""]].append(resource)
    # The record's order: the Patient, then the types by name, each in reading order.
    return {
        patient: sorted(record, key=lambda r: (r["resourceType"] != "Patient", r["resourceType"]))
        for patient, record in found.items()
    }


@pytest.mark.parametrize("partitions", [4, 7])
def test_the_synthea_export_partitioned_gives_the_in_memory_records(
    partitions: int, tmp_path: Path
) -> None:
    layout = partition(SYNTHEA_55, tmp_path / "work", partitions)
    assert layout.count == partitions and layout.patients == 55
    assert layout.unrouted == 0 and layout.malformed_total == 0
    assert records(tmp_path / "work", layout) == _in_memory(SYNTHEA_55)
    assert sum(1 for _ in read_shared(tmp_path / "work")) == layout.shared == 406


def test_reading_what_is_not_there(tmp_path: Path, small_export: Path) -> None:
    with pytest.raises(PartitionError, match=r"no layout\.json"):
        read_layout(tmp_path / "nothing")
    layout = partition(small_export, tmp_path / "work", 2)
    with pytest.raises(ValueError, match="partition 2: the layout has 2"):
        next(read_partition(tmp_path / "work", 2))
    with pytest.raises(ValueError, match="partitions must be between"):
        partition(small_export, tmp_path / "other", 0)
    info = layout.partitions[partition_of("p1", 2)]
    coverage = info.file_of("Coverage")  # p1 alone has one
    assert coverage is not None
    damaged = tmp_path / "work" / coverage.file
    damaged.write_bytes(gzip.compress(b""))
    with pytest.raises(PartitionError, match=r"Coverage\.ndjson\.gz: ends inside patient p1"):
        list(read_partition(tmp_path / "work", info.index))
    damaged.write_bytes(
        gzip.compress(b'{"resourceType":"Coverage"}\n{"resourceType":"Coverage"}\n')
    )
    with pytest.raises(PartitionError, match=r"Coverage\.ndjson\.gz: resources after the last"):
        list(read_partition(tmp_path / "work", info.index))
    damaged.write_bytes(gzip.compress(b'{"resourceType":"Cover'))
    with pytest.raises(PartitionError, match=r"Coverage.ndjson.gz:1: not JSON"):
        list(read_partition(tmp_path / "work", info.index))
    damaged.write_bytes(b"not gzip at all")
    with pytest.raises(PartitionError, match=r"Coverage.ndjson.gz: unreadable \(BadGzipFile"):
        list(read_partition(tmp_path / "work", info.index))
    (tmp_path / "work" / info.patients_file).unlink()
    with pytest.raises(PartitionError, match=r"patients\.ndjson: missing"):
        list(read_partition(tmp_path / "work", info.index))
    layout_file = tmp_path / "work" / LAYOUT_NAME
    layout_file.write_text(layout_file.read_text().replace('"version": 2', '"version": 1'))
    with pytest.raises(PartitionError, match=r"layout version 1 is not 2 .* partition again"):
        read_layout(tmp_path / "work")


def test_a_rerun_that_fails_leaves_no_layout(small_export: Path, tmp_path: Path) -> None:
    partition(small_export, tmp_path / "work", 2)

    def failing() -> Iterator[NdjsonItem]:
        yield from islice(open_source(small_export), 3)
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="went away"):
        partition(failing(), tmp_path / "work", 2)
    assert not (tmp_path / "work" / LAYOUT_NAME).exists()


def test_partitioning_memory_stays_far_below_the_population(
    generated: tuple[Path, GenerateSummary], tmp_path: Path
) -> None:
    """A behaviour check, not a benchmark: the partitioning's Python heap peak is a small
    fraction of the population's JSON (itself smaller than the population as dicts), and
    reading holds one record at a time."""
    export, summary = generated
    population_bytes = sum(len(line) for line in gzip_lines(export))
    assert population_bytes > 80_000_000  # ~95 MB of JSON for 200 patients
    tracemalloc.start()
    try:
        layout = partition(export, tmp_path / "work", 4)
        partition_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        largest = 0
        for _, resources in read_partition(tmp_path / "work", 0, layout=layout):
            largest = max(largest, sum(len(orjson.dumps(r)) for r in resources))
            del resources
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert layout.patients == summary.patients
    assert partition_peak < population_bytes / 8, (partition_peak, population_bytes)
    assert read_peak < population_bytes / 5, (read_peak, population_bytes)
    assert read_peak < 12 * largest + 8_000_000, (read_peak, largest)


def test_a_resource_type_that_is_no_type_name_is_a_malformed_line(tmp_path: Path) -> None:
    """The type names a file of the partition: a path in it must never reach the disk."""
    export = tmp_path / "export"
    export.mkdir()
    write_ndjson(
        export / "Patient.000.ndjson",
        [
            {"resourceType": "Patient", "id": "p1"},
            {"resourceType": "../../escape", "id": "x", "subject": ref("Patient/p1")},
            {"resourceType": "Observation", "id": "o", "subject": ref("Patient/p1")},
        ],
    )
    layout = partition(export, tmp_path / "work", 1)
    assert layout.malformed == (
        f"{export / 'Patient.000.ndjson'}:2: resourceType '../../escape' is not a FHIR "
        "resource type name",
    )
    assert (layout.malformed_total, layout.resources) == (1, 2)
    assert sorted(p.name for p in (tmp_path / "work" / "part-00000").iterdir()) == [
        "Observation.ndjson.gz",
        "Patient.ndjson.gz",
        "patients.ndjson",
    ]
    assert not (tmp_path / "escape.ndjson.gz").exists()
