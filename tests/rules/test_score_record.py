"""`score_record`: the record the scores read holds, for each type they read, exactly the call's
resources of that type as `DataIndex.all_resources` gives them (every source, the first of each
id, in order), so every score's inputs are the ones read from all of the call's resources.
Checked on every Synthea fixture patient, its resources spread over prefetch keys that overlap
as a service's keys do (the scores' Observations also among the vital signs and labs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cds_service.rules.engine import RequestData
from cds_service.rules.pipeline import score_record
from cds_service.scores import SCORES
from cds_service.scores.fhir_inputs import RECORD_TYPES, PatientRecord
from tests.scores.helpers import SYNTHEA_FILES, bundle_resources, last_encounter


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": f"urn:x:{i}", "resource": r} for i, r in enumerate(resources)],
    }


def prefetch_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A service's prefetch: the Patient alone, a Bundle per type, and two Observation keys
    that overlap (every other Observation in both)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    prefetch: dict[str, Any] = {"patient": by_type.pop("Patient")[0]}
    observations = by_type.pop("Observation", [])
    prefetch["vitals"] = searchset(observations[::2])
    prefetch["scoreObservations"] = searchset(observations)
    for kind, of_kind in sorted(by_type.items()):
        prefetch[kind[0].lower() + kind[1:]] = searchset(of_kind)
    return prefetch


@pytest.mark.parametrize("path", SYNTHEA_FILES, ids=lambda p: p.name.split("_")[0])
def test_score_record_reads_what_all_resources_gives(path: Path) -> None:
    resources = bundle_resources(path)
    at = last_encounter(resources)
    context = {"patientId": resources[0]["id"], "userId": "Practitioner/1"}
    data = RequestData(context, prefetch_of(resources), now=at)
    everything = data.index.all_resources()
    whole = PatientRecord(everything, at)
    record = score_record(data)
    for kind in RECORD_TYPES:
        assert record.of_type(kind) == whole.of_type(kind), kind
    # a type the scores never read is not carried
    assert any(r["resourceType"] not in RECORD_TYPES for r in everything)
    assert set(record._by_type) <= RECORD_TYPES
    for name, score in SCORES.items():
        assert score.inputs_from_fhir(record, at) == score.inputs_from_fhir(whole, at), name
