"""CHA2DS2-VASc, HAS-BLED, ADA risk test and qSOFA: the point tables and their boundaries
(../shared/fixtures/risk-scores/point_scores.md)."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.scores import SCORES

CHA = SCORES["cha2ds2-vasc"]
HAS_BLED = SCORES["has-bled"]
ADA = SCORES["ada-diabetes-risk"]
QSOFA = SCORES["qsofa"]


def cha(**changes: Any) -> float | None:
    inputs: dict[str, Any] = {
        "age": 50,
        "sex": "male",
        "chf": False,
        "hypertension": False,
        "diabetes": False,
        "stroke": False,
        "vascular": False,
    }
    return CHA.compute({**inputs, **changes}).value


@pytest.mark.parametrize(("age", "points"), [(64, 0), (65, 1), (74, 1), (75, 2), (90, 2)])
def test_cha2ds2_vasc_age_bands(age: int, points: int) -> None:
    assert cha(age=age) == points


@pytest.mark.parametrize(
    ("item", "points"),
    [("chf", 1), ("hypertension", 1), ("diabetes", 1), ("stroke", 2), ("vascular", 1)],
)
def test_cha2ds2_vasc_items(item: str, points: int) -> None:
    assert cha(**{item: True}) == points


def test_cha2ds2_vasc_female_sex_counts_on_its_own() -> None:
    # point_scores.md gives "Sc Sex category female 1" with no "only with another factor" rule.
    assert cha(sex="female") == 1


def test_cha2ds2_vasc_worked_examples() -> None:
    assert cha(age=70, sex="female", hypertension=True, diabetes=True) == 4
    assert cha(age=80, stroke=True) == 4  # M 80, prior TIA
    everything = {k: True for k in ("chf", "hypertension", "diabetes", "stroke", "vascular")}
    assert cha(age=80, sex="female", **everything) == 9


def test_cha2ds2_vasc_needs_atrial_fibrillation() -> None:
    result = CHA.compute(
        {
            "age": 70,
            "sex": "female",
            "chf": 0,
            "hypertension": 1,
            "diabetes": 0,
            "stroke": 0,
            "vascular": 0,
            "atrial_fibrillation": "no",
        }
    )
    assert result.value is None
    assert result.reason == "CHA2DS2-VASc is validated only in atrial fibrillation; none recorded"


def test_cha2ds2_vasc_missing_item() -> None:
    result = CHA.compute({"age": 70, "sex": "female"})
    assert result.value is None
    assert result.reason == "missing input(s): chf, hypertension, diabetes, stroke, vascular"


def has_bled(**changes: Any) -> tuple[float | None, str | None]:
    inputs: dict[str, Any] = {
        "sbp": 130,
        "renal_disease": False,
        "liver_disease": False,
        "stroke": False,
        "bleeding": False,
        "labile_inr": False,
        "age": 60,
        "drugs": False,
        "alcohol": False,
    }
    result = HAS_BLED.compute({**inputs, **changes})
    return result.value, result.reason


@pytest.mark.parametrize(
    "item",
    ["renal_disease", "liver_disease", "stroke", "bleeding", "labile_inr", "drugs", "alcohol"],
)
def test_has_bled_each_yes_no_criterion(item: str) -> None:
    assert has_bled(**{item: True}) == (1, None)


@pytest.mark.parametrize(
    ("changes", "points"),
    [
        ({"sbp": 160}, 0),
        ({"sbp": 161}, 1),
        ({"age": 65}, 0),  # "Elderly > 65" (Pisters 2010)
        ({"age": 66}, 1),
        ({"creatinine": 2.25}, 0),
        ({"creatinine": 2.26}, 1),
        ({"creatinine": "200 umol/L"}, 1),  # 200 / 88.4 = 2.262 mg/dL
        ({"creatinine": "199 umol/L"}, 0),
    ],
)
def test_has_bled_boundaries(changes: dict[str, Any], points: int) -> None:
    assert has_bled(**changes) == (points, None)


def test_has_bled_maximum() -> None:
    flags = ["renal_disease", "liver_disease", "stroke", "bleeding", "labile_inr", "drugs"]
    assert has_bled(sbp=170, age=70, alcohol=True, **dict.fromkeys(flags, True)) == (9, None)


def test_has_bled_optional_items_are_noted() -> None:
    result = HAS_BLED.compute(
        {
            "sbp": 130,
            "renal_disease": 0,
            "liver_disease": 0,
            "stroke": 0,
            "bleeding": 0,
            "age": 70,
            "drugs": 0,
        }
    )
    assert result.value == 1
    assert result.reason == (
        "labile_inr not given: counted as 0 (the score may be 1 higher); "
        "alcohol not given: counted as 0 (the score may be 1 higher)"
    )


def ada(**changes: Any) -> float | None:
    inputs: dict[str, Any] = {
        "age": 30,
        "sex": "female",
        "gestational_diabetes": False,
        "family_history": False,
        "hypertension": False,
        "physically_active": True,
        "bmi": 22,
    }
    return ADA.compute({**inputs, **changes}).value


@pytest.mark.parametrize(
    ("age", "points"), [(39, 0), (40, 1), (49, 1), (50, 2), (59, 2), (60, 3), (85, 3)]
)
def test_ada_age_bands(age: int, points: int) -> None:
    assert ada(age=age) == points


@pytest.mark.parametrize(
    ("bmi", "points"), [(24.9, 0), (25, 1), (29.9, 1), (30, 2), (39.9, 2), (40, 3)]
)
def test_ada_bmi_bands(bmi: float, points: int) -> None:
    assert ada(bmi=bmi) == points


def test_ada_other_items() -> None:
    assert ada(sex="male", gestational_diabetes=None) == 1
    assert ada(gestational_diabetes=True) == 1
    assert ada(family_history=True) == 1
    assert ada(hypertension=True) == 1
    assert ada(physically_active=False) == 1
    assert (
        ada(
            age=65,
            sex="male",
            family_history=True,
            hypertension=True,
            physically_active=False,
            bmi=41,
            gestational_diabetes=None,
        )
        == 10
    )


def test_ada_maximum_is_10_for_either_sex() -> None:
    """The sex item (man 1) and the gestational-diabetes item (woman 1) exclude each other, so
    the highest total is 3 + 1 + 1 + 1 + 1 + 3 = 10 (Bang 2009; the ADA paper test)."""
    worst = {"age": 65, "family_history": True, "hypertension": True, "physically_active": False}
    assert ada(sex="male", gestational_diabetes=None, bmi=41, **worst) == 10
    assert ada(sex="female", gestational_diabetes=True, bmi=41, **worst) == 10
    assert ADA.value_range == (0.0, 10.0)


def test_ada_not_applicable_and_contradictions() -> None:
    diabetic = ADA.compute({"age": 50, "sex": "male", "hypertension": 0, "bmi": 30, "diabetes": 1})
    assert diabetic.value is None and diabetic.reason is not None
    assert "already diagnosed with diabetes" in diabetic.reason
    male_gdm = ADA.compute(
        {"age": 50, "sex": "male", "hypertension": 0, "bmi": 30, "gestational_diabetes": "yes"}
    )
    assert male_gdm.value is None and male_gdm.reason is not None
    assert "contradictory" in male_gdm.reason
    young = ADA.compute({"age": 19, "sex": "male", "hypertension": 0, "bmi": 30})
    assert young.value is None


def test_ada_defaults_are_noted() -> None:
    result = ADA.compute({"age": 45, "sex": "female", "hypertension": "no", "bmi": 26})
    assert result.value == 2
    assert result.reason is not None
    for key in ("gestational_diabetes", "family_history", "physically_active"):
        assert key in result.reason


def qsofa(**changes: Any) -> float | None:
    inputs: dict[str, Any] = {"resp_rate": 16, "sbp": 120, "gcs": 15}
    return QSOFA.compute({**inputs, **changes}).value


@pytest.mark.parametrize(
    ("changes", "points"),
    [
        ({"resp_rate": 21}, 0),
        ({"resp_rate": 22}, 1),
        ({"sbp": 101}, 0),
        ({"sbp": 100}, 1),
        ({"gcs": 14}, 1),
        ({"gcs": None, "altered_mentation": True}, 1),
        ({"gcs": None, "altered_mentation": False}, 0),
        ({"resp_rate": 30, "sbp": 90, "gcs": 9}, 3),
    ],
)
def test_qsofa_boundaries(changes: dict[str, Any], points: int) -> None:
    assert qsofa(**changes) == points


def test_qsofa_mentation_missing_or_contradictory() -> None:
    missing = QSOFA.compute({"resp_rate": 24, "sbp": 90})
    assert missing.value is None
    assert missing.reason == "missing input(s): gcs or altered_mentation"
    both = QSOFA.compute({"resp_rate": 24, "sbp": 90, "gcs": 15, "altered_mentation": "yes"})
    assert both.value is None
    assert both.reason == "contradictory: gcs 15 but altered_mentation yes"
    impossible = QSOFA.compute({"resp_rate": 24, "sbp": 90, "gcs": 2})
    assert impossible.value is None


def test_qsofa_is_for_adults_only() -> None:
    """Seymour 2016 derived and validated qSOFA in adults: a child's score is not computable."""
    child = QSOFA.compute({"resp_rate": 30, "sbp": 90, "gcs": 15, "age": 12})
    assert child.value is None and child.reason is not None
    assert "outside the validated range" in child.reason
    assert qsofa(resp_rate=30, sbp=90, age=18) == 2
    assert qsofa(resp_rate=30, sbp=90) == 2  # no age given: computed
