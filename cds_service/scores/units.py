"""UCUM unit conversion for score inputs.

Every numeric input has a *kind* with one canonical UCUM unit; other units are converted to it or
refused. Factors:

- cholesterol (total, HDL): 1 mmol/L = 38.67 mg/dL (molar mass of cholesterol 386.65 g/mol).
- creatinine: 1 mg/dL = 88.4 umol/L.
- HbA1c: IFCC mmol/mol to NGSP % by the master equation NGSP = 0.09148 x IFCC + 2.152
  (Hoelzel W, et al. Clin Chem. 2004;50(1):166-174).
- pressure: 1 kPa = 7.50062 mm[Hg].

A bare number (no unit at all) means the canonical unit; a FHIR Quantity without a unit does not
(`convert` is then called with `unit=None` and refuses, except for dimensionless scores).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CANONICAL", "UnitError", "convert", "normalise_unit"]


class UnitError(ValueError):
    """The unit is missing, unknown or not convertible to the kind's canonical unit."""


def _times(factor: float) -> Callable[[float], float]:
    return lambda value: value * factor


_SAME = _times(1.0)

# kind -> (canonical UCUM code, {accepted UCUM code: converter to canonical})
_KINDS: dict[str, tuple[str, dict[str, Callable[[float], float]]]] = {
    "cholesterol": ("mg/dL", {"mg/dL": _SAME, "mmol/L": _times(38.67)}),
    "creatinine": ("mg/dL", {"mg/dL": _SAME, "umol/L": _times(1 / 88.4)}),
    "hba1c": ("%", {"%": _SAME, "mmol/mol": lambda v: 0.09148 * v + 2.152}),
    "pressure": ("mm[Hg]", {"mm[Hg]": _SAME, "kPa": _times(7.50062)}),
    "rate": ("/min", {"/min": _SAME, "{breaths}/min": _SAME, "1/min": _SAME}),
    "bmi": ("kg/m2", {"kg/m2": _SAME}),
    "age": ("a", {"a": _SAME}),
    "gcs": ("{score}", {"{score}": _SAME, "1": _SAME}),
}

CANONICAL: dict[str, str] = {kind: spec[0] for kind, spec in _KINDS.items()}

# Kinds whose FHIR quantities are commonly sent without any unit (dimensionless scores).
_UNITLESS_OK = frozenset({"gcs"})

# Lower-cased spellings seen in the wild -> UCUM code.
_ALIASES: dict[str, str] = {
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "µmol/l": "umol/L",
    "μmol/l": "umol/L",
    "mm[hg]": "mm[Hg]",
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "kpa": "kPa",
    "%": "%",
    "mmol/mol": "mmol/mol",
    "/min": "/min",
    "1/min": "1/min",
    "{breaths}/min": "{breaths}/min",
    "breaths/min": "{breaths}/min",
    "kg/m2": "kg/m2",
    "kg/m^2": "kg/m2",
    "kg/m²": "kg/m2",
    "a": "a",
    "yr": "a",
    "years": "a",
    "{score}": "{score}",
    "1": "1",
}


def normalise_unit(unit: str) -> str:
    """The UCUM code for a unit spelling (exact UCUM codes pass unchanged)."""
    text = unit.strip()
    return _ALIASES.get(text.lower(), text)


def convert(kind: str, value: float, unit: str | None) -> float:
    """`value` in `unit`, expressed in the canonical unit of `kind`; raises UnitError."""
    canonical, converters = _KINDS[kind]
    if unit is None or not unit.strip():
        if kind in _UNITLESS_OK:
            return value
        raise UnitError(f"no unit given (expected {canonical})")
    code = normalise_unit(unit)
    converter = converters.get(code)
    if converter is None:
        accepted = ", ".join(sorted(converters))
        raise UnitError(f"cannot convert unit {unit!r} to {canonical} (accepted: {accepted})")
    return converter(value)
