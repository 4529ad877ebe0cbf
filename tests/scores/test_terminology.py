"""Scores, the SMART view and the rules read one terminology: the value sets by id."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cds_service.scores import SCORES
from cds_service.scores.fhir_inputs import PatientRecord
from cds_service.scores.provider import SCORE_OBSERVATION_SETS
from cds_service.smart.data import SERIES, PatientData, build_view
from cds_service.terminology import value_set

AT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"}


def hba1c(code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"a1c-{code}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": "2024-05-01T09:00:00Z",
        "valueQuantity": {"value": 6.1, "unit": "%", "system": "http://unitsofmeasure.org"},
    }


def condition(system: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"c-{code}",
        "code": {"coding": [{"system": system, "code": code}]},
        "onsetDateTime": "2020-01-01",
    }


def medication(text: str, code: str = "0") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": f"m-{code}",
        "status": "active",
        "intent": "order",
        "authoredOn": "2024-01-01",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": text}],
            "text": text,
        },
    }


@pytest.mark.parametrize("code", ["4548-4", "4549-2", "17855-8", "17856-6", "96595-4"])
def test_an_hba1c_the_view_charts_is_one_the_scores_see(code: str) -> None:
    """Every code of the shared `hba1c` value set: 4549-2 was missing from the scores' list,
    17855-8 from both the scores' and the view's."""
    resources = [PATIENT, hba1c(code)]
    inputs = SCORES["cha2ds2-vasc"].inputs_from_fhir(resources, AT)
    assert inputs["hba1c"] == {"value": 6.1, "unit": "%"}
    view = build_view(
        PatientData(PATIENT, resources, []),
        now=AT,
        need_banner=False,
        context=None,
        style_url=None,
        logout_url="/logout",
        relaunch_url=None,
    )
    (series,) = [s for s in view.series if s.key == "hba1c"]
    assert [(p.value, p.source) for p in series.points] == [(6.1, f"Observation/a1c-{code}")]
    assert f"No {series.title} results on record" not in view.missing


def test_the_scores_prefetch_covers_every_observation_value_set_an_adapter_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: set[str] = set()
    original = PatientRecord._observations

    def spy(self: PatientRecord, value_set_id: str, days: int) -> Iterator[dict[str, Any]]:
        read.add(value_set_id)
        return original(self, value_set_id, days)

    monkeypatch.setattr(PatientRecord, "_observations", spy)
    for score in SCORES.values():
        score.inputs_from_fhir([PATIENT], AT)
    assert read == set(SCORE_OBSERVATION_SETS)


def test_the_view_charts_value_sets() -> None:
    for spec in SERIES:
        for set_id in (spec.value_set, spec.component, spec.second_component):
            assert set_id is None or value_set(set_id).id == set_id


@pytest.mark.parametrize(
    ("score", "key", "system", "code"),
    [
        ("cha2ds2-vasc", "chf", "http://hl7.org/fhir/sid/icd-10-cm", "I50.9"),  # is-a I50
        ("cha2ds2-vasc", "chf", "http://hl7.org/fhir/sid/icd-10", "I50.1"),
        ("cha2ds2-vasc", "chf", "http://hl7.org/fhir/sid/icd-10-cm", "I11.0"),
        ("cha2ds2-vasc", "stroke", "http://hl7.org/fhir/sid/icd-10-cm", "Z86.73"),
        ("cha2ds2-vasc", "vascular", "http://hl7.org/fhir/sid/icd-10-cm", "I70.0"),
        ("cha2ds2-vasc", "atrial_fibrillation", "http://hl7.org/fhir/sid/icd-10", "I48.1"),
        ("cha2ds2-vasc", "hypertension", "http://hl7.org/fhir/sid/icd-10", "I10"),
        ("cha2ds2-vasc", "diabetes", "http://hl7.org/fhir/sid/icd-10-cm", "E11.9"),
        ("has-bled", "renal_disease", "http://hl7.org/fhir/sid/icd-10-cm", "N18.6"),
        ("has-bled", "bleeding", "http://hl7.org/fhir/sid/icd-10-cm", "K92.2"),
        (
            "ada-diabetes-risk",
            "gestational_diabetes",
            "http://hl7.org/fhir/sid/icd-10-cm",
            "O24.419",
        ),
    ],
)
def test_icd10_codes_match_by_prefix_through_is_a_filters(
    score: str, key: str, system: str, code: str
) -> None:
    patient = PATIENT | {"gender": "female"}
    with_it = SCORES[score].inputs_from_fhir([patient, condition(system, code)], AT)
    without = SCORES[score].inputs_from_fhir([patient, condition(system, "Q99")], AT)
    assert with_it[key] is True and without[key] is False


@pytest.mark.parametrize(
    ("score", "key", "text", "code"),
    [
        # by the RxNorm code of a clinical drug in an included value set (ace-inhibitors-arbs)
        ("ascvd", "bp_treated", "Some brand", "999967"),
        # by an ingredient name read from an entry's display
        ("ascvd", "bp_treated", "Lisinopril 10 MG Oral Tablet", "0"),
        # by a name the value set lists only by name (ingredient-name extension)
        ("ascvd", "bp_treated", "Bisoprolol fumarate 5 MG Oral Tablet", "0"),
        ("has-bled", "drugs", "Nabumetone 500 MG Oral Tablet", "0"),
    ],
)
def test_drugs_match_by_code_or_ingredient_name(score: str, key: str, text: str, code: str) -> None:
    hypertension = condition("http://snomed.info/sct", "59621000")
    resources = [PATIENT, hypertension, medication(text, code)]
    assert SCORES[score].inputs_from_fhir(resources, AT)[key] is True
    other = [PATIENT, hypertension, medication("Acetaminophen 325 MG Oral Tablet", "313782")]
    assert SCORES[score].inputs_from_fhir(other, AT)[key] is False


def test_a_vitamin_k_antagonist_listed_by_name_keeps_labile_inr_open() -> None:
    on_vka = [PATIENT, medication("Acenocoumarol 4 MG Oral Tablet")]
    assert "labile_inr" not in SCORES["has-bled"].inputs_from_fhir(on_vka, AT)
    assert SCORES["has-bled"].inputs_from_fhir([PATIENT], AT)["labile_inr"] is False
