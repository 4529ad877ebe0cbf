"""The drug of a medication resource: inline, contained, or a Medication among the data."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.terminology import (
    RXNORM,
    coded,
    drug_of,
    medication_key,
    medications_by_reference,
    value_set,
)

ELIQUIS = {
    "coding": [
        {"system": RXNORM, "code": "1364447", "display": "apixaban 5 MG Oral Tablet [Eliquis]"}
    ]
}
MEDICATION = {"resourceType": "Medication", "id": "eliquis", "code": ELIQUIS}


def order(reference: str, contained: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": "mr-1",
        "status": "active",
        "medicationReference": {"reference": reference},
    }
    if contained is not None:
        found["contained"] = contained
    return found


def test_an_inline_drug_is_the_drug() -> None:
    drug = drug_of({"medicationCodeableConcept": ELIQUIS}, {})
    assert drug.concept is ELIQUIS and not drug.unresolved


def test_a_contained_medication_is_the_drug() -> None:
    drug = drug_of(order("#med", [{**MEDICATION, "id": "med"}]), {})
    assert drug.concept == ELIQUIS and drug.medication is not None
    assert coded(drug.concept, value_set("oral-anticoagulants"))  # the SBD, by its ingredient


@pytest.mark.parametrize(
    "reference",
    [
        "Medication/eliquis",
        "https://ehr.example/fhir/Medication/eliquis",
        "https://ehr.example/fhir/Medication/eliquis/_history/3",
        "urn:uuid:eliquis",
    ],
)
def test_a_medication_among_the_data_is_found_by_its_reference(reference: str) -> None:
    drug = drug_of(order(reference), medications_by_reference([MEDICATION]))
    assert drug.concept == ELIQUIS


def test_a_bundle_entry_is_found_by_its_full_url() -> None:
    medications = medications_by_reference([(MEDICATION, "urn:uuid:0b1c")])
    assert drug_of(order("urn:uuid:0b1c"), medications).concept == ELIQUIS


@pytest.mark.parametrize(
    ("reference", "contained"),
    [("Medication/elsewhere", None), ("#missing", [MEDICATION]), ("#eliquis", [{"id": "x"}])],
)
def test_a_reference_to_nothing_in_hand_is_unresolved(
    reference: str, contained: list[dict[str, Any]] | None
) -> None:
    drug = drug_of(order(reference, contained), medications_by_reference([MEDICATION]))
    assert drug.concept is None and drug.unresolved and drug.reference == reference


def test_no_drug_at_all() -> None:
    drug = drug_of({"resourceType": "MedicationRequest"}, {})
    assert drug.concept is None and not drug.unresolved


@pytest.mark.parametrize(
    ("reference", "key"),
    [
        ("Medication/1", "Medication/1"),
        ("http://x/fhir/Medication/1/", "Medication/1"),
        ("http://x/fhir/Medication/1/_history/2", "Medication/1"),
        ("urn:uuid:abc", "urn:uuid:abc"),
        ("Substance/1", "Substance/1"),
    ],
)
def test_medication_keys(reference: str, key: str) -> None:
    assert medication_key(reference) == key
