"""The value sets of a rules directory (`<rules>/_valuesets/`) and our FHIRPath functions:
`memberOf()`, `drug()` and a strict `single()`.

The files, their format and membership (`is-a` filters, ingredient entries and their drugs
included) are `cds_service.terminology`'s: the same loader reads the bundled value sets for risk
scores and the SMART view. A medication resource (MedicationRequest, MedicationStatement,
MedicationAdministration, MedicationDispense) given to `memberOf()` or `drug()` stands for its
drug: `medicationCodeableConcept`, or the code of the Medication its `medicationReference`
resolves to in the call's data (`cds_service.rules.index`); a Medication stands for its `code`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.rules.index import current_index
from cds_service.terminology.medications import MEDICATION_TYPES, drug_of
from cds_service.terminology.valueset import ValueSet, coded, load_value_sets

__all__ = ["ValueSet", "load_value_sets", "member_of_function"]


def _drug(item: Any) -> Any:
    """A medication resource's drug concept, a Medication's code; anything else as it is."""
    if not isinstance(item, dict):
        return item
    kind = item.get("resourceType")
    if kind == "Medication":
        return item.get("code")
    if kind in MEDICATION_TYPES:
        index = current_index()
        return index.drug(item) if index is not None else drug_of(item, {}).concept
    return item


def member_of_function(value_sets: Mapping[str, ValueSet]) -> dict[str, Any]:
    """Our FHIRPath functions: `memberOf(valueSet)` (true when any input code is a member; a
    medication resource's drug), `drug()` (the drug CodeableConcept of each medication resource)
    and a `single()` that raises as the specification says.

        %order.memberOf('oral-anticoagulants')      # inline, contained or referenced drug
        %order.drug().select(text | coding.display).first()   # its name, for the card
    """

    def member_of(inputs: list[Any], name: str) -> list[bool]:
        if not inputs:
            return []
        value_set = value_sets.get(name)
        if value_set is None:
            raise ValueError(f"unknown value set {name!r}")
        return [coded([_drug(item) for item in inputs], value_set)]

    def drug(inputs: list[Any]) -> list[Any]:
        found = (_drug(item) for item in inputs)
        return [concept for concept in found if isinstance(concept, dict)]

    def single(inputs: list[Any]) -> list[Any]:
        # FHIRPath says single() on several items is an error; fhirpathpy returns an error
        # *value* that later functions (exists(), count()) would silently treat as data.
        if len(inputs) > 1:
            raise ValueError(f"single() on {len(inputs)} items")
        return inputs

    return {
        "memberOf": {"fn": member_of, "arity": {1: ["String"]}},
        "drug": {"fn": drug},
        "single": {"fn": single},
    }
