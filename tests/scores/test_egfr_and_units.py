"""eGFR (CKD-EPI 2021) known values, unit conversion and input validation."""

from __future__ import annotations

import math

import pytest

from cds_service.scores import SCORES
from cds_service.scores.units import UnitError, convert

EGFR = SCORES["egfr"]


def equation(creatinine: float, age: float, female: bool) -> float:
    """CKD-EPI 2021 written out independently of the module under test."""
    kappa = 0.7 if female else 0.9
    alpha = -0.241 if female else -0.302
    ratio = creatinine / kappa
    value: float = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.2 * 0.9938**age
    return value * (1.012 if female else 1)


def test_female_50_creatinine_1() -> None:
    result = EGFR.compute({"age": 50, "sex": "female", "creatinine": 1.0})
    # 142 x (1.0/0.7)^-1.2 x 0.9938^50 x 1.012
    expected = 142 * (1 / 0.7) ** -1.2 * math.exp(50 * math.log(0.9938)) * 1.012
    assert result.value is not None
    assert round(result.value, 1) == round(expected, 1) == 68.6
    assert result.unit == "mL/min/{1.73_m2}"


@pytest.mark.parametrize(
    ("age", "sex", "creatinine", "rounded"),
    [
        (50, "male", 1.0, 91.7),  # above kappa (0.9)
        (40, "male", 0.7, 119.5),  # below kappa: the alpha branch
        (30, "female", 0.6, 123.8),
        (75, "female", 2.5, 19.6),
    ],
)
def test_known_values(age: int, sex: str, creatinine: float, rounded: float) -> None:
    result = EGFR.compute({"age": age, "sex": sex, "creatinine": creatinine})
    expected = equation(creatinine, age, sex == "female")
    assert result.value is not None
    assert round(result.value, 1) == round(expected, 1) == rounded


def test_creatinine_in_micromoles() -> None:
    mg = EGFR.compute({"age": 50, "sex": "female", "creatinine": 1.0})
    for text in ("88.4 umol/L", "88.4 µmol/L", "88.4umol/L"):
        umol = EGFR.compute({"age": 50, "sex": "female", "creatinine": text})
        assert umol.value == mg.value
        assert umol.inputs["creatinine"] == pytest.approx(1.0)
    fhir = EGFR.compute(
        {"age": 50, "sex": "female", "creatinine": {"value": 88.4, "unit": "umol/L"}}
    )
    assert fhir.value == mg.value


def test_not_computable_cases() -> None:
    child = EGFR.compute({"age": 12, "sex": "male", "creatinine": 0.5})
    assert child.value is None
    assert child.reason == "age 12 years is outside the validated range 18-130 years"
    bad_unit = EGFR.compute({"age": 50, "sex": "male", "creatinine": "1.0 mg/mL"})
    assert bad_unit.value is None
    assert bad_unit.reason is not None
    assert "cannot convert unit 'mg/mL' to mg/dL" in bad_unit.reason
    no_unit = EGFR.compute({"age": 50, "sex": "male", "creatinine": {"value": 1.0, "unit": None}})
    assert no_unit.reason == "creatinine: no unit given (expected mg/dL)"
    bound = EGFR.compute(
        {"age": 50, "sex": "male", "creatinine": {"value": 0.3, "unit": "mg/dL", "comparator": "<"}}
    )
    assert bound.value is None and bound.reason is not None and "bound" in bound.reason
    implausible = EGFR.compute({"age": 50, "sex": "male", "creatinine": 45})
    assert implausible.value is None
    assert implausible.reason == "implausible creatinine 45 mg/dL (plausible 0.1-30 mg/dL)"
    missing = EGFR.compute({"age": 50, "sex": "male"})
    assert missing.reason == "missing input(s): creatinine"


def test_bad_values_never_raise() -> None:
    for bad in ("abc", "nan", float("inf"), True, [1], {"value": "1"}):
        result = EGFR.compute({"age": 50, "sex": "male", "creatinine": bad})
        assert result.value is None
        assert result.reason is not None and result.reason.startswith("creatinine: expected")
    sex = EGFR.compute({"age": 50, "sex": "unknown", "creatinine": 1})
    assert sex.reason == "sex: expected one of female, male, got 'unknown'"
    unknown = EGFR.compute({"age": 50, "sex": "male", "creatinine": 1, "weight": 80})
    assert unknown.value is None and unknown.reason == "unknown input(s): weight"
    flag = SCORES["qsofa"].compute({"resp_rate": 20, "sbp": 120, "altered_mentation": "maybe"})
    assert flag.reason == "altered_mentation: expected yes/no, got 'maybe'"


@pytest.mark.parametrize(
    ("kind", "value", "unit", "expected"),
    [
        ("cholesterol", 5.0, "mmol/L", 193.35),
        ("cholesterol", 200, "mg/dl", 200),
        ("creatinine", 176.8, "umol/L", 2.0),
        ("hba1c", 48, "mmol/mol", 6.543),  # IFCC 48 mmol/mol ~ NGSP 6.5 %
        ("pressure", 16, "kPa", 120.01),
        ("pressure", 120, "mmHg", 120),
        ("rate", 18, "{breaths}/min", 18),
        ("gcs", 14, None, 14),
    ],
)
def test_unit_conversion(kind: str, value: float, unit: str | None, expected: float) -> None:
    assert convert(kind, value, unit) == pytest.approx(expected, abs=0.01)


def test_unconvertible_units() -> None:
    with pytest.raises(UnitError, match="cannot convert unit 'g/L' to mg/dL"):
        convert("cholesterol", 2.0, "g/L")
    with pytest.raises(UnitError, match="no unit given"):
        convert("cholesterol", 200, None)
