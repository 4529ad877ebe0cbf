"""`memberOf()` and `drug()` on medication resources: the drug inline, contained or referenced."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.rules.fhirpath import compile_path
from cds_service.rules.index import DataIndex, current_index
from cds_service.rules.valuesets import member_of_function
from cds_service.terminology import bundled_value_sets

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ELIQUIS = {
    "coding": [{"system": RXNORM, "code": "1364447", "display": "apixaban 5 MG Oral Tablet"}],
    "text": "Eliquis 5 mg",
}
CONTAINED = {
    "resourceType": "MedicationRequest",
    "id": "contained",
    "medicationReference": {"reference": "#m"},
    "contained": [{"resourceType": "Medication", "id": "m", "code": ELIQUIS}],
}
REFERENCED = {
    "resourceType": "MedicationStatement",
    "id": "referenced",
    "medicationReference": {"reference": "Medication/eliquis"},
}
MEDICATION = {"resourceType": "Medication", "id": "eliquis", "code": ELIQUIS}


def evaluate(expression: str, order: dict[str, Any]) -> list[Any]:
    path = compile_path(expression, functions=member_of_function(bundled_value_sets()))
    return path({}, {"order": [order]})


@pytest.mark.parametrize("order", [CONTAINED, {**CONTAINED, "medicationCodeableConcept": ELIQUIS}])
def test_member_of_reads_the_drug_of_a_medication_resource(order: dict[str, Any]) -> None:
    assert evaluate("%order.memberOf('oral-anticoagulants')", order) == [True]
    assert evaluate("%order.memberOf('vitamin-k-antagonists')", order) == [False]
    assert evaluate("%order.drug().text", order) == ["Eliquis 5 mg"]


def test_a_referenced_medication_is_found_in_the_call_being_evaluated() -> None:
    index = DataIndex({"meds": {"resourceType": "Bundle", "entry": [{"resource": MEDICATION}]}})
    assert evaluate("%order.memberOf('oral-anticoagulants')", REFERENCED) == [False]
    with index.active():
        assert current_index() is index
        assert evaluate("%order.memberOf('oral-anticoagulants')", REFERENCED) == [True]
        assert evaluate("%order.drug().coding.code", REFERENCED) == ["1364447"]
    assert current_index() is None
    with pytest.raises(RuntimeError), index.active():  # an error leaves no index behind
        raise RuntimeError("a rule failed")
    assert current_index() is None


def test_the_reference_itself_is_no_drug() -> None:
    """`medication` of a referencing order is a Reference, which has no code."""
    assert evaluate("%order.medication.memberOf('oral-anticoagulants')", CONTAINED) == [False]
    assert evaluate("%order.medication.ofType(CodeableConcept).exists()", CONTAINED) == [False]
