"""The one routing of a resource to its patient (cds_service/bulk/routing.py)."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.bulk.routing import (
    SHARED_TYPES,
    Route,
    encounter_of,
    patient_of,
    reference_id,
    route,
)


def ref(text: str) -> dict[str, str]:
    return {"reference": text}


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "urn:uuid:p1",
        "https://ehr.example.org/fhir/Patient/p1",
        "http://ehr.example.org/fhir/Patient/p1/_history/3",
        "Patient/p1/_history/2",
    ],
)
@pytest.mark.parametrize("field", ["subject", "patient", "beneficiary"])
def test_every_reference_form_names_the_patient(field: str, reference: str) -> None:
    resource = {"resourceType": "Observation", "id": "o1", field: ref(reference)}
    assert patient_of(resource) == "p1"
    assert route(resource) == Route("patient", "p1")


@pytest.mark.parametrize(
    "reference",
    [
        "Group/g1",
        "Patient?identifier=http://x|1",
        "#contained",
        "Patient/",
        "https://ehr.example.org/fhir/Group/p1",
        "p1",
    ],
)
def test_references_that_name_no_patient(reference: str) -> None:
    assert patient_of({"resourceType": "Observation", "subject": ref(reference)}) is None


def test_a_logical_reference_names_no_id() -> None:
    logical = {"identifier": {"system": "http://mrn", "value": "1"}}
    assert reference_id(logical, "Patient") is None
    assert reference_id("Patient/p1", "Patient") is None  # not a Reference


def test_a_patient_is_routed_by_its_id() -> None:
    assert route({"resourceType": "Patient", "id": "p1"}) == Route("patient", "p1")
    assert route({"resourceType": "Patient"}) == Route("unrouted", None)


def test_the_first_field_that_names_a_patient_wins() -> None:
    resource = {
        "resourceType": "Coverage",
        "subject": ref("Group/g"),
        "beneficiary": ref("Patient/p2"),
    }
    assert patient_of(resource) == "p2"


@pytest.mark.parametrize(
    ("resource", "encounter"),
    [
        ({"encounter": ref("Encounter/e1")}, "e1"),
        ({"encounter": ref("urn:uuid:e1")}, "e1"),
        ({"encounter": ref("https://h/fhir/Encounter/e1")}, "e1"),
        ({"context": ref("Encounter/e1")}, "e1"),  # STU3 and R4 MedicationAdministration
        ({"context": {"encounter": [ref("Encounter/e1")]}}, "e1"),  # R4 DocumentReference
        ({"encounter": [ref("Encounter/e1")]}, "e1"),
        ({"context": ref("EpisodeOfCare/x")}, None),
        ({}, None),
    ],
)
def test_resources_that_name_only_an_encounter(
    resource: dict[str, Any], encounter: str | None
) -> None:
    resource = {"resourceType": "Observation", "id": "o", **resource}
    assert encounter_of(resource) == encounter
    expected = Route("encounter", encounter) if encounter else Route("unrouted", None)
    assert route(resource) == expected


def test_a_patient_reference_beats_the_encounter() -> None:
    resource = {
        "resourceType": "Observation",
        "subject": ref("Patient/p1"),
        "encounter": ref("Encounter/e1"),
    }
    assert route(resource) == Route("patient", "p1")


@pytest.mark.parametrize("resource_type", sorted(SHARED_TYPES))
def test_shared_resources_are_kept_aside_by_type_and_id(resource_type: str) -> None:
    resource = {"resourceType": resource_type, "id": "x", "patient": ref("Patient/p1")}
    assert route(resource) == Route("shared", f"{resource_type}/x")
    assert route({"resourceType": resource_type}) == Route("shared", None)
