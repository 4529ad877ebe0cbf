"""What would move a point score to another category: each change recomputed by the score."""

from __future__ import annotations

from typing import Any

from cds_service.smart.what_changes import what_changes

HAS_BLED: dict[str, Any] = {
    "sbp": 172.0,  # H: above 160
    "renal_disease": False,
    "liver_disease": False,
    "stroke": False,
    "bleeding": False,
    "labile_inr": False,
    "age": 70,  # E: over 65
    "drugs": True,  # D
    "alcohol": False,
    "atrial_fibrillation": True,
}


def _table(name: str, value: float, inputs: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    return [(c.label, c.value, c.category, c.moves) for c in what_changes(name, value, inputs)]


def test_has_bled_lists_its_modifiable_factors_and_all_together() -> None:
    lower = "low to moderate bleeding risk"
    assert _table("has-bled", 3.0, HAS_BLED) == [
        ("Systolic BP 172 controlled to 160 mmHg or below", 2.0, lower, True),
        ("Antiplatelet or NSAID stopped", 2.0, lower, True),
        ("All of these", 1.0, lower, True),
    ]
    controlled = {**HAS_BLED, "sbp": 140.0, "drugs": False}
    assert _table("has-bled", 1.0, controlled) == []  # nothing left to change


def test_ada_risk_activity_and_bmi_band() -> None:
    inputs = {
        "age": 55,  # 2
        "sex": "male",  # 1
        "family_history": False,
        "hypertension": True,  # 1
        "physically_active": False,  # 1
        "bmi": 27.0,  # 1
        "diabetes": False,
    }
    assert _table("ada-diabetes-risk", 6.0, inputs) == [
        ("Physically active", 5.0, "high risk: test for diabetes", False),
        ("BMI below 25", 5.0, "high risk: test for diabetes", False),
        ("All of these", 4.0, "lower risk", True),
    ]


def test_cha2ds2_vasc_shows_what_would_raise_it() -> None:
    inputs = {
        "age": 60,
        "sex": "male",
        "chf": False,
        "hypertension": True,  # 1 point: moderate for a man
        "diabetes": False,
        "stroke": False,
        "vascular": False,
        "atrial_fibrillation": True,
    }
    table = _table("cha2ds2-vasc", 1.0, inputs)
    high = "high: anticoagulation recommended"
    assert table[0] == ("Heart failure diagnosed", 2.0, high, True)
    assert ("A stroke, TIA or thromboembolism", 3.0, high, True) in table
    assert all(label != "All of these" for label, *_ in table)
    assert len(table) == 4  # each diagnosis not on record


def test_nothing_for_scores_without_changes_or_not_computed() -> None:
    assert what_changes("egfr", 52.0, {"age": 60, "sex": "male", "creatinine": 1.4}) == ()
    assert what_changes("has-bled", None, HAS_BLED) == ()
