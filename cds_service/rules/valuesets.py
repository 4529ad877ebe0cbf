"""The value sets of a rules directory (`<rules>/_valuesets/`) and the `memberOf()` FHIRPath
function.

The files, their format and membership (`is-a` filters included) are
`cds_service.terminology`'s: the same loader reads the bundled value sets for risk scores and the
SMART view.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.terminology.valueset import ValueSet, coded, load_value_sets

__all__ = ["ValueSet", "load_value_sets", "member_of_function"]


def member_of_function(value_sets: Mapping[str, ValueSet]) -> dict[str, Any]:
    """Our FHIRPath functions: `memberOf(valueSet)` (true when any input code is a member) and a
    `single()` that raises as the specification says."""

    def member_of(inputs: list[Any], name: str) -> list[bool]:
        if not inputs:
            return []
        value_set = value_sets.get(name)
        if value_set is None:
            raise ValueError(f"unknown value set {name!r}")
        return [coded(inputs, value_set)]

    def single(inputs: list[Any]) -> list[Any]:
        # FHIRPath says single() on several items is an error; fhirpathpy returns an error
        # *value* that later functions (exists(), count()) would silently treat as data.
        if len(inputs) > 1:
            raise ValueError(f"single() on {len(inputs)} items")
        return inputs

    return {
        "memberOf": {"fn": member_of, "arity": {1: ["String"]}},
        "single": {"fn": single},
    }
