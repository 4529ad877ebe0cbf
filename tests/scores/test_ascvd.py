"""ASCVD (Pooled Cohort Equations): the Goff 2013 worked example, ranges, race, contradictions."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from cds_service.scores import SCORES
from tests.scores.helpers import RISK_SCORES

ASCVD = SCORES["ascvd"]
EXAMPLE = json.loads((RISK_SCORES / "pce_goff2013_worked_example.json").read_text())[
    "worked_example"
]
GROUPS = {
    "white_female": ("white", "female"),
    "aa_female": ("african-american", "female"),
    "white_male": ("white", "male"),
    "aa_male": ("african-american", "male"),
}


def example_inputs(**changes: Any) -> dict[str, Any]:
    given = EXAMPLE["inputs"]
    inputs = {
        "age": given["age"],
        "sex": "male",
        "race": "white",
        "total_cholesterol": given["total_chol_mgdl"],
        "hdl": given["hdl_mgdl"],
        "sbp": given["sbp_mmhg"],
        "bp_treated": given["bp_treated"],
        "smoker": given["smoker"],
        "diabetes": given["diabetes"],
    }
    inputs.update(changes)
    return inputs


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_goff_2013_worked_example(group: str) -> None:
    race, sex = GROUPS[group]
    result = ASCVD.compute(example_inputs(race=race, sex=sex))
    assert result.value is not None, result.reason
    assert result.value == pytest.approx(EXAMPLE["results"][group]["risk_pct"], abs=0.1)
    assert result.unit == "%"
    assert result.reason is None


def test_worked_example_values() -> None:
    values = {
        group: ASCVD.compute(example_inputs(race=race, sex=sex)).value
        for group, (race, sex) in GROUPS.items()
    }
    assert values == {"white_female": 2.05, "aa_female": 3.03, "white_male": 5.38, "aa_male": 6.07}


def test_missing_race_uses_white_equations_with_a_note() -> None:
    inputs = example_inputs()
    del inputs["race"]
    result = ASCVD.compute(inputs)
    assert result.value == ASCVD.compute(example_inputs(race="white")).value
    assert result.reason == "race not recorded: computed with the white/other equations"
    assert result.inputs["race"] == "white"


def test_other_race_uses_white_equations_with_a_note() -> None:
    result = ASCVD.compute(example_inputs(race="other"))
    assert result.value == 5.38
    assert result.reason is not None and "white equations" in result.reason


def test_hand_computed_treated_smoker_diabetic() -> None:
    """Darwin-like inputs plus smoking and diabetes, against the formula written out by hand."""
    age, tc, hdl, sbp = 67, 170.24, 77, 146
    la = math.log(age)
    total = (
        12.344 * la
        + 11.853 * math.log(tc)
        - 2.664 * la * math.log(tc)
        - 7.990 * math.log(hdl)
        + 1.769 * la * math.log(hdl)
        + 1.797 * math.log(sbp)
        + 7.837
        - 1.795 * la
        + 0.658
    )
    expected = 100 * (1 - 0.9144 ** math.exp(total - 61.18))
    inputs = example_inputs(age=age, total_cholesterol=tc, hdl=hdl, sbp=sbp, bp_treated=True)
    result = ASCVD.compute({**inputs, "smoker": "yes", "diabetes": "yes"})
    assert result.value == pytest.approx(expected, abs=0.01)


def test_treatment_raises_risk() -> None:
    untreated = ASCVD.compute(example_inputs(sbp=140)).value
    treated = ASCVD.compute(example_inputs(sbp=140, bp_treated=True)).value
    assert untreated is not None and treated is not None and treated > untreated


def test_cholesterol_in_mmol_per_litre() -> None:
    result = ASCVD.compute(example_inputs(total_cholesterol="5.508 mmol/L", hdl="1.293 mmol/L"))
    assert result.inputs["total_cholesterol"] == pytest.approx(213.0, abs=0.05)
    assert result.inputs["hdl"] == pytest.approx(50.0, abs=0.05)
    assert result.value == pytest.approx(5.38, abs=0.02)


@pytest.mark.parametrize(
    ("key", "inside", "outside"),
    [
        ("age", [40, 79], [39, 80]),
        ("total_cholesterol", [130, 320], [129, 321]),
        ("hdl", [20, 100], [19, 101]),
        ("sbp", [90, 200], [89, 201]),
    ],
)
def test_validated_ranges(key: str, inside: list[float], outside: list[float]) -> None:
    for value in inside:
        assert ASCVD.compute(example_inputs(**{key: value})).value is not None
    for value in outside:
        result = ASCVD.compute(example_inputs(**{key: value}))
        assert result.value is None
        assert result.reason is not None and "outside the validated range" in result.reason
        assert key in result.reason


def test_implausible_systolic_is_not_computable() -> None:
    result = ASCVD.compute(example_inputs(sbp=20))
    assert result.value is None
    assert result.reason == "implausible sbp 20 mm[Hg] (plausible 50-300 mm[Hg])"


def test_missing_inputs_are_listed() -> None:
    result = ASCVD.compute({"age": 55, "sex": "female"})
    assert result.value is None
    assert result.reason is not None
    assert result.reason.startswith("missing input(s): total_cholesterol, hdl, sbp, bp_treated")


def test_clinical_ascvd_is_not_computable() -> None:
    result = ASCVD.compute(example_inputs(clinical_ascvd=True))
    assert result.value is None
    assert result.reason is not None and "primary prevention" in result.reason


@pytest.mark.parametrize(("hba1c", "computable"), [(3.9, False), (4.0, True), (7.5, True)])
def test_hba1c_below_4_in_a_diabetic_is_contradictory(hba1c: float, computable: bool) -> None:
    result = ASCVD.compute(example_inputs(diabetes=True, hba1c=hba1c))
    assert (result.value is not None) is computable
    if not computable:
        assert result.reason is not None and "implausible HbA1c 3.90 %" in result.reason


def test_hba1c_out_of_plausible_range() -> None:
    result = ASCVD.compute(example_inputs(hba1c=2.5))
    assert result.value is None
    assert result.reason is not None and "implausible hba1c" in result.reason


def test_race_from_us_core_extension() -> None:
    def patient(code: str) -> dict[str, Any]:
        race = {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [
                {
                    "url": "ombCategory",
                    "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": code},
                },
                {"url": "text", "valueString": "x"},
            ],
        }
        return {
            "resourceType": "Patient",
            "id": "p",
            "gender": "female",
            "birthDate": "1970-01-01",
            "extension": [race],
        }

    at = datetime(2025, 6, 1, tzinfo=UTC)
    assert ASCVD.inputs_from_fhir([patient("2054-5")], at)["race"] == "african-american"
    assert ASCVD.inputs_from_fhir([patient("2106-3")], at)["race"] == "white"
    assert ASCVD.inputs_from_fhir([patient("2028-9")], at)["race"] == "other"
    assert "race" not in ASCVD.inputs_from_fhir([patient("UNK")], at)
