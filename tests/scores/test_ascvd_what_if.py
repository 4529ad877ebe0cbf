"""ASCVD what-if: each scenario checked against hand-computed relative risks (CTT 2010 per
mmol/L of LDL-C lowered, Ettehad 2016 per 10 mmHg), on the guideline's worked example."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.scores import SCORES
from cds_service.scores.ascvd_what_if import ascvd_what_if

# Goff 2013's worked example (white man, 55), made a smoker with a systolic BP of 140.
PATIENT: dict[str, Any] = {
    "age": 55,
    "sex": "male",
    "race": "white",
    "total_cholesterol": 213.0,
    "hdl": 50.0,
    "sbp": 140.0,
    "bp_treated": False,
    "smoker": True,
    "diabetes": False,
}
# By hand: 0.78 ** (130 mg/dL x 0.30 / 38.67 mg/dL per mmol/L) = 0.78 ** 1.0085 = 0.7783;
# 0.78 ** (130 x 0.50 / 38.67) = 0.78 ** 1.6809 = 0.6586; 0.80 ** ((140 - 130) / 10) = 0.80.
MODERATE, HIGH, BP = 0.7783, 0.6586, 0.80


def _risks(**kwargs: Any) -> dict[str, float]:
    found = ascvd_what_if({**PATIENT, **kwargs.pop("changes", {})}, **kwargs)
    return {s.label: s.risk for s in found}


def test_every_scenario_against_hand_computed_ratios() -> None:
    risks = _risks(ldl_mg_dl=130.0, on_statin=False)
    current = risks["Current risk"]
    assert current == pytest.approx(12.9, abs=0.05)  # the equations for this patient
    assert risks["Moderate-intensity statin"] / current == pytest.approx(MODERATE, abs=1e-4)
    assert risks["High-intensity statin"] / current == pytest.approx(HIGH, abs=1e-4)
    assert risks["Systolic BP to 130 mmHg"] / current == pytest.approx(BP, abs=1e-9)
    quit_risk = risks["Stop smoking"]
    assert quit_risk == SCORES["ascvd"].compute({**PATIENT, "smoker": False}).value
    assert risks["All of these"] == pytest.approx(quit_risk * HIGH * BP, rel=1e-3)
    optimal = SCORES["ascvd"].compute(
        {**PATIENT, "total_cholesterol": 170, "hdl": 50, "sbp": 110, "smoker": False}
    )
    assert risks["Optimal risk factors"] == optimal.value
    assert list(risks) == [
        "Current risk",
        "Moderate-intensity statin",
        "High-intensity statin",
        "Systolic BP to 130 mmHg",
        "Stop smoking",
        "All of these",
        "Optimal risk factors",
    ]


def test_the_worked_example_itself_has_only_the_statin_to_change() -> None:
    """SBP 120 (at goal), not smoking: only statins apply, so no "All of these"."""
    risks = _risks(ldl_mg_dl=130.0, on_statin=False, changes={"sbp": 120.0, "smoker": False})
    assert risks["Current risk"] == pytest.approx(5.3, abs=0.1)  # the guideline's printed value
    assert set(risks) == {
        "Current risk",
        "Moderate-intensity statin",
        "High-intensity statin",
        "Optimal risk factors",
    }


def test_no_statin_scenario_without_an_ldl_or_on_a_statin() -> None:
    assert "High-intensity statin" not in _risks(ldl_mg_dl=None, on_statin=False)
    assert "High-intensity statin" not in _risks(ldl_mg_dl=130.0, on_statin=True)
    # Only BP and smoking left: still two changes, still combined.
    risks = _risks(ldl_mg_dl=None, on_statin=False)
    assert risks["All of these"] == pytest.approx(risks["Stop smoking"] * BP, rel=1e-9)


def test_nothing_when_the_equations_cannot_compute() -> None:
    assert ascvd_what_if({**PATIENT, "age": 35}, ldl_mg_dl=130.0, on_statin=False) == ()
    assert ascvd_what_if({**PATIENT, "hdl": None}, ldl_mg_dl=130.0, on_statin=False) == ()
