"""`cds-service population generate`: synthetic patients resampled from the Synthea export."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from cds_service.bulk.routing import SHARED_TYPES
from cds_service.cli import main
from cds_service.population.generate import GenerateSummary, generate
from cds_service.population.partition import partition, read_partition
from cds_service.population.records import read_population
from cds_service.population.synthetic import JITTER, SHIFT_DAYS, Template
from tests.population.conftest import GENERATED_PATIENTS, SYNTHEA_55

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")

Records = dict[str, list[dict[str, Any]]]


def lines(directory: Path, pattern: str = "*.ndjson.gz") -> Iterator[bytes]:
    for path in sorted(directory.glob(pattern)):
        with gzip.open(path, "rb") as stream:
            yield from stream


@pytest.fixture(scope="module")
def source() -> Records:
    return read_population(SYNTHEA_55).records


@pytest.fixture(scope="module")
def reread(
    generated: tuple[Path, GenerateSummary], tmp_path_factory: pytest.TempPathFactory
) -> Records:
    """The generated export partitioned again (P=3) and read back."""
    export, _ = generated
    work = tmp_path_factory.mktemp("reread")
    layout = partition(export, work, 3)
    assert (layout.malformed_total, layout.unrouted) == (0, 0)
    assert sum(p.without_patient for p in layout.partitions) == 0
    return {
        patient: resources
        for index in range(layout.count)
        for patient, resources in read_partition(work, index, layout=layout)
    }


def test_n_distinct_patients_re_readable_by_the_partitioner(
    generated: tuple[Path, GenerateSummary], reread: Records
) -> None:
    _, summary = generated
    assert summary.patients == len(reread) == GENERATED_PATIENTS
    assert summary.templates == 55 and summary.skipped == 0
    for patient, resources in reread.items():
        assert resources[0]["resourceType"] == "Patient" and resources[0]["id"] == patient
    every_id = [r["id"] for resources in reread.values() for r in resources]
    assert len(every_id) == len(set(every_id)) == summary.resources


def test_no_original_id_is_left(generated: tuple[Path, GenerateSummary], source: Records) -> None:
    export, _ = generated
    original = {r["id"] for resources in source.values() for r in resources}
    assert len(original) > 19_000
    shared_files = {f"{t}." for t in SHARED_TYPES}
    for path in sorted(export.glob("*.ndjson.gz")):
        if any(path.name.startswith(prefix) for prefix in shared_files):
            continue
        text = gzip.decompress(path.read_bytes()).decode()
        assert original.isdisjoint(UUID.findall(text)), path.name


def _encounter_starts(resources: list[dict[str, Any]]) -> list[datetime]:
    return sorted(
        datetime.fromisoformat(r["period"]["start"])
        for r in resources
        if r["resourceType"] == "Encounter"
    )


def _gaps(starts: list[datetime]) -> tuple[timedelta, ...]:
    return tuple(later - earlier for earlier, later in pairwise(starts))


def test_dates_are_shifted_consistently_within_a_patient(reread: Records, source: Records) -> None:
    templates: dict[tuple[timedelta, ...], list[list[dict[str, Any]]]] = {}
    for resources in source.values():
        templates.setdefault(_gaps(_encounter_starts(resources)), []).append(resources)
    shifts = set()
    for resources in reread.values():
        starts = _encounter_starts(resources)
        candidates = templates[_gaps(starts)]  # the intervals between encounters are kept
        patient = resources[0]
        matched = False
        for template in candidates:
            days = (starts[0].date() - _encounter_starts(template)[0].date()).days
            birth = date.fromisoformat(template[0]["birthDate"]) + timedelta(days=days)
            matched |= birth.isoformat() == patient["birthDate"]
            shifts.add(days)
        assert matched
        assert all(
            DATE_TIME.fullmatch(r["period"]["start"])
            for r in resources
            if r["resourceType"] == "Encounter"
        )
    assert 0 not in shifts and len(shifts) > 50
    assert all(SHIFT_DAYS[0] <= days <= SHIFT_DAYS[1] for days in shifts)


def test_the_manifest_lists_several_files_per_large_type(
    generated: tuple[Path, GenerateSummary],
) -> None:
    export, summary = generated
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert manifest["transactionTime"] == "2026-12-04T00:00:00Z"  # the source's
    listed = {entry["url"]: entry for entry in manifest["output"]}
    assert set(listed) == {p.name for p in export.glob("*.ndjson.gz")}
    for name, entry in listed.items():
        assert entry["type"] == name.split(".")[0]
        assert entry["count"] == sum(1 for _ in lines(export, name)) <= 20_000
    observations = [e for e in manifest["output"] if e["type"] == "Observation"]
    assert len(observations) >= 2
    patients = sum(e["count"] for e in manifest["output"] if e["type"] == "Patient")
    assert patients == summary.patients


def _record() -> list[dict[str, Any]]:
    patient_id = "6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"
    return [
        {
            "resourceType": "Patient",
            "id": patient_id,
            "identifier": [
                {"system": "https://github.com/synthetichealth/synthea", "value": patient_id},
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-62-3386"},
            ],
            "name": [{"family": "Lemke", "given": ["Abram", "Q"], "text": "Abram Q Lemke"}],
            "telecom": [{"system": "phone", "value": "555-552-8721"}],
            "address": [{"line": ["376 Bartell Plaza"], "city": "Mashpee"}],
            "gender": "male",
            "birthDate": "1965-01",
            "deceasedDateTime": "2020-03-04T05:06:07.123+01:00",
        },
        {
            "resourceType": "Encounter",
            "id": "enc-1",  # not a UUID: found in id, value and reference members
            "subject": {"reference": f"urn:uuid:{patient_id}", "display": "Abram Q Lemke"},
            "period": {"start": "2010-12-31T23:30:00-05:00", "end": "2011-01-01T00:10:00-05:00"},
        },
        {
            "resourceType": "Observation",
            "id": "obs-1",
            "subject": {"reference": f"https://ehr.example/fhir/Patient/{patient_id}"},
            "encounter": {"reference": "Encounter/enc-1"},
            "effectiveDateTime": "2010-12-31",
            "code": {"coding": [{"code": "2010"}], "text": "1999-01-02 in words"},
            "valueQuantity": {"value": 166.3, "unit": "cm"},
            "component": [
                {"valueQuantity": {"value": 120}},
                {"valueQuantity": {"value": 0.987654}},
            ],
            "performer": [{"reference": "Practitioner/shared-doc"}],
        },
        {
            "resourceType": "Claim",
            "id": "claim-1",
            "patient": {"reference": f"Patient/{patient_id}", "display": "Abram Q Lemke"},
            "item": [{"encounter": [{"reference": "Encounter/enc-1"}]}],
            "identifier": [{"value": "obs-1"}],
        },
    ]


def test_a_copy_rewrites_ids_dates_names_and_values_consistently() -> None:
    template = Template.of(_record())
    copies = [[orjson.loads(text) for _, text in template.render(5, k)] for k in range(2)]
    assert copies[0] != copies[1]
    original = _record()
    old_ids = {r["id"] for r in original}
    for patient, encounter, observation, claim in copies:
        new_id = patient["id"]
        assert new_id not in old_ids and UUID.fullmatch(new_id)
        text = json.dumps([patient, encounter, observation, claim])
        assert not any(old in text for old in old_ids), "an original id is left"
        assert "Lemke" not in text and "Abram" not in text and "Bartell" in text
        assert patient["identifier"][0]["value"] == new_id  # an id-identifier follows the id
        ssn = patient["identifier"][1]["value"]
        assert re.fullmatch(r"\d{3}-\d{2}-\d{4}", ssn) and ssn != "999-62-3386"
        assert re.fullmatch(r"\d+ Bartell Plaza", patient["address"][0]["line"][0])
        name = patient["name"][0]
        assert len(name["given"]) == 2 and "text" not in name
        assert encounter["subject"] == {
            "reference": f"urn:uuid:{new_id}",
            "display": " ".join([*name["given"], name["family"]]),
        }
        assert claim["patient"]["display"] == encounter["subject"]["display"]
        assert observation["subject"]["reference"] == f"https://ehr.example/fhir/Patient/{new_id}"
        assert observation["encounter"]["reference"] == f"Encounter/{encounter['id']}"
        assert claim["item"][0]["encounter"][0]["reference"] == f"Encounter/{encounter['id']}"
        assert claim["identifier"][0]["value"] == observation["id"]
        assert observation["performer"] == original[2]["performer"]  # shared: unchanged
        # One shift for every date, at each one's precision; codes that look like years stay.
        start = datetime.fromisoformat(encounter["period"]["start"])
        days = (start.date() - date(2010, 12, 31)).days
        assert days != 0 and start.strftime("%H:%M:%S%z") == "23:30:00-0500"
        end = date(2011, 1, 1) + timedelta(days=days)
        assert encounter["period"]["end"] == f"{end.isoformat()}T00:10:00-05:00"
        assert (
            observation["effectiveDateTime"] == (date(2010, 12, 31) + timedelta(days)).isoformat()
        )
        death = date(2020, 3, 4) + timedelta(days=days)
        assert patient["deceasedDateTime"] == f"{death.isoformat()}T05:06:07.123+01:00"
        assert re.fullmatch(r"\d{4}-\d{2}", patient["birthDate"])
        assert observation["code"] == original[2]["code"]
        # Values within the jitter, at the precision they had.
        value = observation["valueQuantity"]["value"]
        assert abs(value / 166.3 - 1) <= JITTER and round(value, 1) == value
        components = [c["valueQuantity"]["value"] for c in observation["component"]]
        assert isinstance(components[0], int) and abs(components[0] / 120 - 1) <= JITTER + 0.01
        assert (
            abs(components[1] / 0.987654 - 1) <= JITTER and round(components[1], 6) == components[1]
        )
    assert [r["resourceType"] for r in copies[0]] == [r["resourceType"] for r in original]
    again = [orjson.loads(text) for _, text in template.render(5, 1)]
    assert again == copies[1]  # (seed, k) decide everything


def test_the_command_is_deterministic_and_refuses_a_full_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["population", "generate", "--from", str(SYNTHEA_55), "--patients", "3"]
    assert main([*argv, "--out", str(tmp_path / "one"), "--seed", "4"]) == 0
    assert "3 patients from 3 templates" in capsys.readouterr().out
    generate(SYNTHEA_55, tmp_path / "two", 3, seed=4)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert main([*argv, "--out", str(tmp_path / "one")]) == 2
    assert "is not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv[:-2], "--patients", "0", "--out", str(tmp_path / "x")])
    assert "0 is not a positive number" in capsys.readouterr().err
