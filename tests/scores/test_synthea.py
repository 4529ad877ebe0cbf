"""Every score for every Synthea patient (../shared/fixtures/fhir-r4/synthea/), at the date of the
patient's last encounter; plus outcomes checked by hand against the fixture README table."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.scores import SCORES, score_from_fhir, score_names
from cds_service.scores.base import ScoreResult
from tests.scores.helpers import SYNTHEA_FILES, bundle_resources, last_encounter, synthea_file


def score_patient(first_name: str, score: str) -> ScoreResult:
    resources = bundle_resources(synthea_file(first_name))
    return score_from_fhir(score, resources, last_encounter(resources))


def test_eighteen_patients_six_scores() -> None:
    assert len(SYNTHEA_FILES) == 18
    assert score_names() == [
        "ascvd",
        "cha2ds2-vasc",
        "has-bled",
        "ada-diabetes-risk",
        "qsofa",
        "egfr",
    ]


@pytest.mark.parametrize("path", SYNTHEA_FILES, ids=lambda p: p.name.split("_")[0])
def test_every_score_is_a_number_in_range_or_a_reason(path: Path) -> None:
    resources = bundle_resources(path)
    at = last_encounter(resources)
    for name, score in SCORES.items():
        result = score_from_fhir(name, resources, at)
        assert result.score == name
        if result.value is None:
            assert result.reason, (path.name, name)
        else:
            low, high = score.value_range
            assert low <= result.value <= high, (path.name, name, result.value)
        assert result.to_json()["inputs"] == result.inputs


@pytest.mark.parametrize(
    ("first_name", "points"),
    # age points + sex + conditions, by hand from the README table and the conditions list:
    [
        ("Arnette", 3),  # F 77 (2) + female (1); CAD without MI is not "vascular"
        ("Arturo", 0),  # M 61, AF only
        ("Jess", 3),  # M 79 (2) + hypertension (1)
        ("Randolph", 5),  # M 93 (2) + hypertension (1) + stroke (2)
        ("Seth", 4),  # M 88 (2) + stroke (2)
    ],
)
def test_patients_with_af_get_a_cha2ds2_vasc(first_name: str, points: int) -> None:
    result = score_patient(first_name, "cha2ds2-vasc")
    assert result.value == points
    assert result.sources["atrial_fibrillation"].startswith("Condition/")


@pytest.mark.parametrize(
    ("first_name", "points"),
    [
        ("Arnette", 2),  # age > 65, clopidogrel + naproxen
        ("Arturo", 1),  # anaemia
        ("Jess", 2),  # age > 65, anaemia
        ("Randolph", 3),  # age, stroke, creatinine 3.17 mg/dL >= 2.26
        ("Seth", 3),  # age, stroke, creatinine >= 2.26
    ],
)
def test_has_bled_for_patients_on_warfarin(first_name: str, points: int) -> None:
    result = score_patient(first_name, "has-bled")
    assert result.value == points
    # On warfarin, and no INR in the record: labile INR cannot be judged and is noted.
    assert result.reason is not None and "labile_inr not given" in result.reason


def test_patients_without_af_get_no_cha2ds2_vasc() -> None:
    result = score_patient("Darwin", "cha2ds2-vasc")
    assert result.value is None
    assert result.reason == "CHA2DS2-VASc is validated only in atrial fibrillation; none recorded"


def test_darwin_mclaughlin_ascvd() -> None:
    """M 67, TC 170.24, HDL 77, SBP 146 on amlodipine/HCTZ/olmesartan with hypertension, never
    smoker, prediabetes only, no race recorded -> white equations, treated SBP: 15.45 %."""
    result = score_patient("Darwin", "ascvd")
    assert result.inputs == {
        "age": 67.0,
        "sex": "male",
        "race": "white",
        "total_cholesterol": 170.24,
        "hdl": 77.0,
        "sbp": 146.0,
        "bp_treated": True,
        "smoker": False,
        "diabetes": False,
        "hba1c": 5.94,
        "clinical_ascvd": False,
    }
    assert result.value == pytest.approx(15.45, abs=0.01)
    assert result.reason == "race not recorded: computed with the white/other equations"
    assert result.sources["sbp"].endswith(" 2019-10-10T03:12:57-04:00")
    assert result.sources["bp_treated"].startswith("MedicationRequest/")


def test_darwin_ada_risk() -> None:
    result = score_patient("Darwin", "ada-diabetes-risk")
    assert result.value == 6  # age >= 60 (3) + male (1) + hypertension (1) + BMI 27.3 (1)


def test_wenona_hba1c_3_9_in_a_diabetic_is_not_computable() -> None:
    result = score_patient("Wenona", "ascvd")
    assert result.value is None
    assert result.reason == "implausible HbA1c 3.91 % in a patient with diabetes (below 4.0 %)"
    ada = score_patient("Wenona", "ada-diabetes-risk")
    assert ada.value is None and ada.reason is not None and "already diagnosed" in ada.reason


@pytest.mark.parametrize("first_name", ["Arnette", "Felipe", "Ulrike"])
def test_clinical_ascvd_excludes_the_pooled_cohort_equations(first_name: str) -> None:
    result = score_patient(first_name, "ascvd")
    assert result.value is None
    assert result.reason is not None and "primary prevention" in result.reason


@pytest.mark.parametrize("first_name", ["Ben", "Fannie"])
def test_children_are_outside_every_adult_score(first_name: str) -> None:
    for name in ("ascvd", "cha2ds2-vasc", "has-bled", "ada-diabetes-risk", "egfr"):
        result = score_patient(first_name, name)
        assert result.value is None
        assert result.reason is not None and "age" in result.reason


def test_egfr_from_synthea_creatinine_38483_4() -> None:
    result = score_patient("Darwin", "egfr")  # creatinine 0.85 mg/dL on 2019-10-10, M 67
    assert result.value == pytest.approx(95.2, abs=0.05)
    assert result.sources["creatinine"].endswith(" 2019-10-10T03:12:57-04:00")


def test_qsofa_needs_mentation() -> None:
    result = score_patient("Darwin", "qsofa")
    assert result.value is None
    assert result.reason == "missing input(s): gcs or altered_mentation"
