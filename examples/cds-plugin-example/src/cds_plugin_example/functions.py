"""`toMmolPerL()`: cholesterol in mg/dL as mmol/L, for rule expressions.

    %ldl.valueQuantity.toMmolPerL() > 4.9        # a FHIR Quantity in mg/dL
    190.toMmolPerL()                             # a number taken as mg/dL

1 mmol/L of cholesterol is 38.67 mg/dL (molar mass 386.65 g/mol). Items that are neither a
number nor a Quantity in mg/dL (or already in mmol/L) give nothing, as FHIRPath functions do.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

MG_DL_PER_MMOL_L = 38.67


def _mmol(item: Any) -> float | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int | float | Decimal):
        return float(item) / MG_DL_PER_MMOL_L
    if isinstance(item, dict) and isinstance(item.get("value"), int | float | Decimal):
        unit = str(item.get("code") or item.get("unit") or "")
        if unit == "mg/dL":
            return float(item["value"]) / MG_DL_PER_MMOL_L
        if unit == "mmol/L":
            return float(item["value"])
    return None


def to_mmol_per_l(inputs: list[Any]) -> list[float]:
    return [value for item in inputs if (value := _mmol(item)) is not None]


#: The entry point: fhirpathpy's form, no arguments.
TO_MMOL_PER_L = {"fn": to_mmol_per_l, "arity": {0: []}}
