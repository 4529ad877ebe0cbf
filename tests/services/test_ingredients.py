"""Ingredients read from RxNorm names (cds_service/services/builtin/_ingredients.py)."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.services.builtin._ingredients import ingredients

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def order(
    display: str | None = None, text: str | None = None, system: str = RXNORM
) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if display is not None:
        concept["coding"] = [{"system": system, "code": "1", "display": display}]
    if text is not None:
        concept["text"] = text
    return {"resourceType": "MedicationRequest", "medicationCodeableConcept": concept}


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("lisinopril", {"lisinopril"}),
        ("warfarin sodium", {"warfarin"}),
        ("dabigatran etexilate", {"dabigatran"}),
        ("hydrochlorothiazide / lisinopril", {"hydrochlorothiazide", "lisinopril"}),
        ("lisinopril 10 MG Oral Tablet", {"lisinopril"}),
        ("lisinopril 10 MG Oral Tablet [Zestril]", {"lisinopril"}),
        (
            "hydrochlorothiazide 12.5 MG / lisinopril 20 MG Oral Tablet",
            {"hydrochlorothiazide", "lisinopril"},
        ),
        ("0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe [Lovenox]", {"enoxaparin"}),
        (
            "Abuse-Deterrent 12 HR oxycodone hydrochloride 80 MG Extended Release Oral Tablet",
            {"oxycodone"},
        ),
        ("72 HR fentanyl 0.025 MG/HR Transdermal System", {"fentanyl"}),
        ("potassium chloride 20 MEQ Extended Release Oral Tablet", {"potassium"}),
        ("hydrocortisone 1 % Topical Cream", {"hydrocortisone"}),
        (
            "{74 (apixaban 5 MG Oral Tablet [Eliquis]) } Pack [Eliquis 30-Day Starter Pack]",
            {"apixaban"},
        ),
        ("Drug 617993", set()),
        ("amoxicillin 500mg caps", set()),
        ("", set()),
    ],
)
def test_ingredients_of_rxnorm_names(display: str, expected: set[str]) -> None:
    assert ingredients(order(display)) == expected


def test_text_is_read_only_when_codings_give_nothing_and_it_has_a_strength() -> None:
    assert ingredients(order(text="Lisinopril 10 MG Oral Tablet")) == {"lisinopril"}
    assert ingredients(order(text="lisinopril")) == set()  # free text without a strength
    assert ingredients(order("warfarin", text="Lisinopril 10 MG Oral Tablet")) == {"warfarin"}
    # a display of another system is not an RxNorm name
    assert ingredients(order("lisinopril", system="http://snomed.info/sct")) == set()


def test_odd_shapes_have_no_ingredients() -> None:
    assert ingredients({"medicationCodeableConcept": "lisinopril"}) == set()
    odd = {"medicationCodeableConcept": {"coding": [None, {"system": RXNORM}]}}
    assert ingredients(odd) == set()
    assert ingredients({"medicationReference": {"reference": "Medication/1"}}) == set()
    assert ingredients(order("lisinopril / 10")) == set()
    assert ingredients(order("lisinopril 10 MG / hydrochlorothiazide")) == set()
