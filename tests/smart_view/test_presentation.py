"""How the clinician view words scores: categories at the guidelines' boundaries, applicability,
inputs a clinician reads (labels, units, kinds of source, ages, staleness, what to record)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from cds_service.smart.presentation import (
    category,
    headline,
    input_rows,
    not_applicable,
    relative_age,
)

NOW = datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=UTC)  # a real clock has microseconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (4.9, "low"),
        (5.0, "borderline"),
        (7.4, "borderline"),
        (7.5, "intermediate"),
        (19.9, "intermediate"),
        (20.0, "high"),
    ],
)
def test_ascvd_categories_are_the_2018_guideline_bands(value: float, expected: str) -> None:
    assert category("ascvd", value, {}) == expected


@pytest.mark.parametrize(
    ("sex", "value", "expected"),
    [
        ("male", 0, "low"),
        ("male", 1, "moderate: anticoagulation may be considered"),
        ("male", 2, "high: anticoagulation recommended"),
        ("female", 1, "low"),  # the sex point alone
        ("female", 2, "moderate: anticoagulation may be considered"),
        ("female", 3, "high: anticoagulation recommended"),
    ],
)
def test_cha2ds2_vasc_categories_count_the_female_point(
    sex: str, value: float, expected: str
) -> None:
    assert category("cha2ds2-vasc", value, {"sex": sex}) == expected


@pytest.mark.parametrize(
    ("value", "stage"),
    [(95, "G1"), (90, "G1"), (89.9, "G2"), (59, "G3a"), (44, "G3b"), (29, "G4"), (14.9, "G5")],
)
def test_egfr_categories_are_kdigo_stages(value: float, stage: str) -> None:
    found = category("egfr", value, {})
    assert found is not None and found.startswith(f"{stage},")


def test_headline_is_one_line_with_unit_and_category() -> None:
    cat = category("ascvd", 15.43, {})
    assert (
        headline("ascvd", "ASCVD …", 15.43, "%", cat) == "10-year ASCVD risk 15.4 % — intermediate"
    )
    egfr = headline("egfr", "eGFR …", 52.0, "mL/min/{1.73_m2}", category("egfr", 52.0, {}))
    assert egfr == "eGFR 52 mL/min/1.73 m² — G3a, mildly to moderately decreased"
    assert headline("qsofa", "qSOFA (Sepsis-3)", None, "points", None) == "qSOFA: not computable"


@pytest.mark.parametrize(
    ("name", "value", "inputs", "why"),
    [
        ("cha2ds2-vasc", None, {"atrial_fibrillation": False}, "no atrial fibrillation"),
        ("has-bled", None, {"atrial_fibrillation": False}, "no atrial fibrillation"),
        ("ada-diabetes-risk", None, {"diabetes": True}, "diabetes already diagnosed"),
        ("ascvd", None, {"clinical_ascvd": True, "age": 60}, "clinical ASCVD"),
        ("ascvd", None, {"age": 35}, "validated for ages 40 to 79 (the patient is 35)"),
        ("qsofa", None, {"resp_rate": None, "sbp": 120}, "no vital signs in the last day"),
    ],
)
def test_scores_that_do_not_apply_say_why(
    name: str, value: float | None, inputs: dict[str, Any], why: str
) -> None:
    found = not_applicable(name, value, inputs)
    assert found is not None and why in found


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("cha2ds2-vasc", {"atrial_fibrillation": True}),
        ("ascvd", {"age": 40, "clinical_ascvd": False}),
        ("ascvd", {"age": 79}),
        ("egfr", {"creatinine": None}),  # missing data is shown, with what to order
        ("ada-diabetes-risk", {"diabetes": False}),
    ],
)
def test_scores_that_apply(name: str, inputs: dict[str, Any]) -> None:
    assert not_applicable(name, None, inputs) is None


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (date(2026, 12, 4), "today (2026-12-04)"),
        (date(2026, 12, 3), "yesterday (2026-12-03)"),
        (date(2026, 11, 20), "14 days ago (2026-11-20)"),
        (date(2026, 9, 1), "3 months ago (2026-09-01)"),
        (date(2025, 6, 4), "18 months ago (2025-06-04)"),
        (date(2018, 12, 4), "8 years ago (2018-12-04)"),
        (date(2027, 1, 1), "in the future (2027-01-01)"),
    ],
)
def test_relative_age(when: date, expected: str) -> None:
    assert relative_age(when, NOW.date()) == expected


def test_rows_read_like_a_chart() -> None:
    """Real-clock `now` (microseconds), sources as the scores give them, the resources at hand
    saying which category an Observation is filed under."""
    resources = {
        "Observation/bp1": {
            "resourceType": "Observation",
            "id": "bp1",
            "category": [{"coding": [{"code": "vital-signs"}]}],
        },
        "Observation/s1": {
            "resourceType": "Observation",
            "id": "s1",
            "category": [{"coding": [{"code": "social-history"}]}],
        },
    }
    rows = input_rows(
        "ascvd",
        {
            "age": 61,
            "sbp": 142.0,
            "smoker": True,
            "bp_treated": False,
            "hypertension": True,
            "total_cholesterol": None,
            "hba1c": {"value": 6.1, "unit": "%"},
            "diabetes": False,
            "race": "white",
        },
        {
            "age": "Patient/p 1965-03-02",
            "sbp": "Observation/bp1 2023-11-30T10:00:00Z",
            "smoker": "Observation/s1 2026-09-01",
            "bp_treated": "MedicationRequest/m1 2026-01-10",
            "hypertension": "Condition/c1 2019-04-02",
            "hba1c": "Observation/a1 2026-06-01",
        },
        {"age": "age", "sbp": "pressure", "total_cholesterol": "cholesterol", "hba1c": "hba1c"},
        resources,
        NOW,
    )
    by_key = {row.key: row for row in rows}
    assert (by_key["age"].label, by_key["age"].value, by_key["age"].kind) == (
        "Age",
        "61 years",
        "Demographics",
    )
    assert by_key["age"].when is None  # a birth date is no measurement date
    sbp = by_key["sbp"]
    assert (sbp.label, sbp.value, sbp.kind, sbp.reference) == (
        "Systolic BP",
        "142 mmHg",
        "Vital sign",
        "Observation/bp1",
    )
    assert sbp.when == "3 years ago (2023-11-30)"
    assert sbp.stale == "3 years old (older than 2 years)"
    assert (by_key["smoker"].kind, by_key["smoker"].stale) == ("Social history", None)
    assert by_key["bp_treated"].kind == "Medication list"
    assert by_key["hypertension"].kind == "Problem list"
    assert by_key["hypertension"].stale is None  # a diagnosis does not go stale
    assert by_key["hba1c"].value == "6.1 %" and by_key["hba1c"].kind == "Lab result"
    assert by_key["diabetes"].kind == "None on record"  # the search found no diabetes
    assert by_key["race"].kind == "Assumed (not on record)"  # the equations' default
    missing = by_key["total_cholesterol"]
    assert (missing.value, missing.kind, missing.to_record) == ("", None, "order a lipid panel")


def test_qsofa_applies_in_acute_care_before_vitals() -> None:
    inputs = {"resp_rate": None, "sbp": None}
    assert not_applicable("qsofa", None, inputs) is not None
    assert not_applicable("qsofa", None, inputs, acute_care=True) is None


@pytest.mark.parametrize(
    ("encounter", "text", "acute"),
    [
        (
            {
                "class": {"code": "EMER"},
                "type": [{"text": "Emergency room admission"}],
                "period": {"start": "2026-12-04T08:00:00Z"},
                "status": "in-progress",
            },
            "Emergency: Emergency room admission — since 2026-12-04, in progress",
            True,
        ),
        (
            {
                "class": {"code": "AMB"},
                "type": [{"coding": [{"display": "Check up"}]}],
                "period": {"start": "2026-11-01T09:00:00Z", "end": "2026-11-01T09:20:00Z"},
                "status": "finished",
            },
            "Office visit: Check up — 2026-11-01",
            False,
        ),
        ({"class": "not a coding"}, "Encounter", False),
    ],
)
def test_the_encounter_in_one_line(encounter: dict[str, Any], text: str, acute: bool) -> None:
    from cds_service.smart.data import encounter_text

    assert encounter_text(encounter) == (text, acute)
