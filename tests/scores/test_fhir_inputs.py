"""Reading inputs from FHIR R4 JSON: windows, BP panels, smoking, conditions, medications."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cds_service.scores import SCORES, compute_result, score_from_fhir
from cds_service.scores.fhir_inputs import PatientRecord, Unknown

HYPERTENSION, ANTIHYPERTENSIVES = "hypertension", "antihypertensives"  # value set ids
AT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1964-06-02"}
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


def qty(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def obs(oid: str, loinc: str, when: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": extra.pop("status", "final"),
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "effectiveDateTime": when,
    }
    if value is not None:
        resource["valueQuantity"] = value
    resource.update(extra)
    return resource


def bp_panel(oid: str, when: str, systolic: float) -> dict[str, Any]:
    parts = [("8480-6", systolic), ("8462-4", 80)]
    component = [
        {"code": {"coding": [{"system": LOINC, "code": c}]}, "valueQuantity": qty(v, "mm[Hg]")}
        for c, v in parts
    ]
    return obs(oid, "85354-9", when, component=component)


def condition(cid: str, snomed: str, onset: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": SNOMED, "code": snomed}]},
        "onsetDateTime": onset,
        **extra,
    }


def status(system_suffix: str, code: str) -> dict[str, Any]:
    return {
        "coding": [
            {"system": f"http://terminology.hl7.org/CodeSystem/{system_suffix}", "code": code}
        ]
    }


def test_age_on_the_day_before_the_birthday() -> None:
    record = PatientRecord([PATIENT], AT)
    assert record.age() == (59, "Patient/p1 1964-06-02")
    assert PatientRecord([PATIENT], datetime(2024, 6, 2, tzinfo=UTC)).age() == (
        60,
        "Patient/p1 1964-06-02",
    )


def test_latest_systolic_from_panel_or_stand_alone() -> None:
    resources = [
        bp_panel("old", "2024-01-01T10:00:00Z", 150),
        obs("alone", "8480-6", "2024-05-01T10:00:00Z", qty(132, "mm[Hg]")),
        bp_panel("newer", "2024-05-20T10:00:00+02:00", 141),
        bp_panel("future", "2024-07-01T10:00:00Z", 99),
        bp_panel("wrong", "2024-05-30T10:00:00Z", 300) | {"status": "entered-in-error"},
    ]
    record = PatientRecord(resources, AT)
    value, source = record.latest_systolic(365) or (None, None)
    assert value == {"value": 141, "unit": "mm[Hg]"}
    assert source == "Observation/newer 2024-05-20T10:00:00+02:00"
    only_alone = PatientRecord(resources[:2], AT).latest_systolic(365)
    assert only_alone is not None and only_alone[0]["value"] == 132


def test_look_back_window() -> None:
    resources = [obs("tc", "2093-3", "2023-05-01", qty(5.2, "mmol/L"))]
    record = PatientRecord(resources, AT)
    assert record.latest_quantity("total-cholesterol", 365) is None
    assert record.latest_quantity("total-cholesterol", 400) == (
        {"value": 5.2, "unit": "mmol/L"},
        "Observation/tc 2023-05-01",
    )


def test_latest_among_several_codes_ties_and_double_coding() -> None:
    two_codes = obs("both", "2093-3", "2024-03-01T00:00:00Z", qty(200, "mg/dL"))
    two_codes["code"]["coding"].append({"system": LOINC, "code": "14647-2"})
    resources = [
        obs("first", "14647-2", "2024-04-01T00:00:00Z", qty(5.0, "mmol/L")),
        obs("second", "2093-3", "2024-04-01T00:00:00Z", qty(190, "mg/dL")),  # same time
        two_codes,
        obs("no-date", "2093-3", "", qty(1, "mg/dL")),
    ]
    record = PatientRecord(resources, AT)
    both = "total-cholesterol"  # 2093-3 and 14647-2
    # At the same time the one listed first wins, whichever code it carries.
    assert record.latest_quantity(both, 365) == (
        {"value": 5.0, "unit": "mmol/L"},
        "Observation/first 2024-04-01T00:00:00Z",
    )
    # An Observation carrying two of the codes is seen once.
    ids = [o["id"] for o in record._observations(both, 365)]
    assert ids == ["first", "second", "both"]


def test_one_record_serves_every_score_of_a_call() -> None:
    record = PatientRecord([PATIENT, bp_panel("bp", "2024-05-01T00:00:00Z", 150)], AT)
    assert PatientRecord.of(record, AT) is record
    later = PatientRecord.of(record, datetime(2026, 1, 1, tzinfo=UTC))
    assert later is not record and later.age() == (61, "Patient/p1 1964-06-02")
    assert later.latest_systolic(365) is None  # the reading is out of the later window
    fresh = PatientRecord.of([PATIENT], AT)
    assert fresh.age() == record.age()
    # Scores give the same inputs from a record as from the resources it was built from.
    resources = [PATIENT, bp_panel("bp", "2024-05-01T00:00:00Z", 150)]
    for calculator in SCORES.values():
        assert calculator.inputs_from_fhir(PatientRecord(resources, AT), AT) == (
            calculator.inputs_from_fhir(resources, AT)
        )


def test_smoking_status_codes() -> None:
    def smoking(code: str) -> dict[str, Any]:
        value = {"coding": [{"system": SNOMED, "code": code}]}
        return obs(code, "72166-2", "2024-05-01", valueCodeableConcept=value)

    for code, expected in [
        ("449868002", True),
        ("428041000124106", True),
        ("77176002", True),
        ("428071000124103", True),
        ("428061000124105", True),
        ("266919005", False),
        ("8517006", False),
    ]:
        found = PatientRecord([smoking(code)], AT).smoker(365)
        assert found is not None and found[0] is expected, code
    assert PatientRecord([smoking("266927001")], AT).smoker(365) is None  # unknown


def test_condition_activity() -> None:
    def htn(**extra: Any) -> PatientRecord:
        return PatientRecord([condition("c", "59621000", "2010-01-01", **extra)], AT)

    assert htn().condition(HYPERTENSION) == (True, "Condition/c 2010-01-01")
    resolved = htn(clinicalStatus=status("condition-clinical", "resolved"))
    assert resolved.condition(HYPERTENSION) == (False, None)
    assert resolved.condition(HYPERTENSION, history=True)[0] is True
    abated_later = htn(
        clinicalStatus=status("condition-clinical", "resolved"), abatementDateTime="2024-12-01"
    )
    assert abated_later.condition(HYPERTENSION)[0] is True
    refuted = htn(verificationStatus=status("condition-ver-status", "refuted"))
    assert refuted.condition(HYPERTENSION, history=True) == (False, None)
    future = PatientRecord([condition("c", "59621000", "2025-01-01")], AT)
    assert future.condition(HYPERTENSION, history=True) == (False, None)
    icd = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I13.10"}]}
    icd_condition = condition("i", "x", "2010-01-01") | {"code": icd}
    assert PatientRecord([icd_condition], AT).condition(HYPERTENSION)[0] is True


def test_medications() -> None:
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"

    def request(status_code: str, code: str, text: str, **extra: Any) -> dict[str, Any]:
        concept = {"coding": [{"system": rxnorm, "code": code, "display": text}], "text": text}
        return {
            "resourceType": "MedicationRequest",
            "id": "m",
            "status": status_code,
            "intent": "order",
            "medicationCodeableConcept": concept,
            "authoredOn": "2020-01-01",
            **extra,
        }

    by_ingredient = request("active", "29046", "lisinopril")
    by_name = request("active", "999967", "amLODIPine 5 MG / Hydrochlorothiazide 12.5 MG Tablet")
    assert PatientRecord([by_ingredient], AT).medication(ANTIHYPERTENSIVES)[0] is True
    assert PatientRecord([by_name], AT).medication(ANTIHYPERTENSIVES) == (
        True,
        "MedicationRequest/m 2020-01-01",
    )
    stopped = request("stopped", "29046", "lisinopril")
    assert PatientRecord([stopped], AT).medication(ANTIHYPERTENSIVES)[0] is False
    acetaminophen = request("active", "313782", "Acetaminophen 325 MG Oral Tablet")
    assert PatientRecord([acetaminophen], AT).medication(ANTIHYPERTENSIVES)[0] is False
    statement = {
        "resourceType": "MedicationStatement",
        "id": "s",
        "status": "completed",
        "medicationReference": {"reference": "Medication/med1"},
        "effectivePeriod": {"start": "2024-01-01", "end": "2024-12-31"},
    }
    medication = {
        "resourceType": "Medication",
        "id": "med1",
        "code": {"coding": [{"system": rxnorm, "code": "6918"}]},
    }
    assert PatientRecord([statement, medication], AT).medication(ANTIHYPERTENSIVES)[0] is True


def test_a_drug_is_matched_by_code_before_name() -> None:
    """A drug the ingredient map knows is in a set or not by its code: its text cannot add it
    (acetaminophen mislabelled "warfarin"); a drug the map does not know falls back to its
    text. A branded drug in a contained Medication counts by its ingredient."""
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"

    def request(concept: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        found = {
            "resourceType": "MedicationRequest",
            "id": "m",
            "status": "active",
            "intent": "order",
            "authoredOn": "2020-01-01",
            **extra,
        }
        return found | ({"medicationCodeableConcept": concept} if concept else {})

    known = {"coding": [{"system": rxnorm, "code": "313782"}], "text": "warfarin"}
    unknown = {"coding": [{"system": rxnorm, "code": "99999999"}], "text": "warfarin 5 mg"}
    assert PatientRecord([request(known)], AT).medication("vitamin-k-antagonists")[0] is False
    assert PatientRecord([request(unknown)], AT).medication("vitamin-k-antagonists")[0] is True
    advil = {"coding": [{"system": rxnorm, "code": "153008"}]}  # ibuprofen 200 MG [Advil]
    contained = request(
        medicationReference={"reference": "#advil"},
        contained=[{"resourceType": "Medication", "id": "advil", "code": advil}],
    )
    assert PatientRecord([contained], AT).medication("antiplatelets-nsaids")[0] is True


def test_bp_treated_needs_hypertension_and_a_drug() -> None:
    ascvd = SCORES["ascvd"]
    verapamil = {
        "resourceType": "MedicationRequest",
        "id": "v",
        "status": "active",
        "intent": "order",
        "authoredOn": "2020-01-01",
        "medicationCodeableConcept": {"text": "Verapamil Hydrochloride 40 MG"},
    }
    assert ascvd.inputs_from_fhir([PATIENT, verapamil], AT)["bp_treated"] is False
    htn = condition("h", "59621000", "2010-01-01")
    assert ascvd.inputs_from_fhir([PATIENT, verapamil, htn], AT)["bp_treated"] is True


def test_units_from_fhir_are_converted_or_refused() -> None:
    resources = [
        PATIENT,
        obs("tc", "2093-3", "2024-05-01", qty(5.5, "mmol/L")),
        obs("hdl", "2085-9", "2024-05-01", qty(1.3, "mmol/L")),
        bp_panel("bp", "2024-05-01", 128),
        obs("cr", "2160-0", "2024-05-01", qty(97, "umol/L")),
    ]
    result = score_from_fhir("ascvd", resources, AT)
    assert result.inputs["total_cholesterol"] == round(5.5 * 38.67, 4)
    assert result.inputs["hdl"] == round(1.3 * 38.67, 4)
    assert result.sources["total_cholesterol"] == "Observation/tc 2024-05-01"
    assert result.value is None  # smoking status is missing
    assert result.reason == "missing input(s): smoker"
    egfr = score_from_fhir("egfr", resources, AT)
    assert egfr.inputs["creatinine"] == round(97 / 88.4, 4)
    assert egfr.value is not None and egfr.computed_at is not None

    odd = [PATIENT, obs("cr", "2160-0", "2024-05-01", {"value": 1.1, "unit": "mg%"})]
    refused = score_from_fhir("egfr", odd, AT)
    assert refused.value is None
    assert refused.reason == (
        "creatinine: cannot convert unit 'mg%' to mg/dL (accepted: mg/dL, umol/L)"
    )
    low = [PATIENT, bp_panel("bp", "2024-05-31", 20)]
    implausible = score_from_fhir("has-bled", low, AT)
    assert implausible.value is None and implausible.reason is not None
    assert "implausible sbp 20 mm[Hg]" in implausible.reason


def test_a_score_may_read_only_the_listed_record_types() -> None:
    """Population jobs open only RECORD_TYPES: reading another type must fail loudly in the
    score's tests, not silently see nothing in precompute."""
    record = PatientRecord([{"resourceType": "Procedure", "id": "p"}], datetime(2024, 1, 1))
    with pytest.raises(ValueError, match=r"\['Procedure'\] not in RECORD_TYPES"):
        record.of_type("Procedure")
    assert record.of_type("Condition") == []


def test_a_score_may_read_only_the_listed_observation_value_sets() -> None:
    """The Observations are indexed by the codes of OBSERVATION_SETS only: a value set outside
    it must fail loudly, not silently find nothing."""
    ldl = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "18262-6"}]},
        "effectiveDateTime": "2023-12-01",
        "valueQuantity": {"value": 90, "unit": "mg/dL"},
    }
    record = PatientRecord([PATIENT, ldl], datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="ldl-cholesterol not in OBSERVATION_SETS"):
        record.latest_quantity("ldl-cholesterol", 365)
    assert record.latest_quantity("total-cholesterol", 365) is None


def test_provenance_present_absent_and_unknown() -> None:
    """What failed to load is unknown, never absent; what is found stays found."""
    why = "Conditions could not be loaded (ReadTimeout)"
    af = condition("af", "49436004", "2020-01-01")
    known = PatientRecord([PATIENT, af], AT)
    assert known.condition("atrial-fibrillation", history=True) == (True, "Condition/af 2020-01-01")
    assert known.condition("heart-failure") == (False, None)  # searched: not recorded
    gap = PatientRecord([PATIENT, af], AT, {"Condition": why})
    assert gap.condition("atrial-fibrillation", history=True)[0] is True  # found: present
    unknown, source = gap.condition("heart-failure")
    assert isinstance(unknown, Unknown) and unknown.reason == why and source is None
    assert not unknown  # never reads as a finding
    # Observations: the latest in a window cannot be known when they failed, found or not.
    tc = obs("tc", "2093-3", "2024-05-01", qty(5.2, "mmol/L"))
    labs = PatientRecord([PATIENT, tc], AT, {"Observation": "Observations could not be loaded"})
    assert isinstance(labs.latest_quantity("total-cholesterol", 365)[0], Unknown)  # type: ignore[index]
    assert isinstance(labs.latest_systolic(365)[0], Unknown)  # type: ignore[index]
    assert isinstance(labs.smoker(365)[0], Unknown)  # type: ignore[index]
    # Patient: unknown only when it is missing and failed.
    assert PatientRecord([], AT).age() is None
    assert isinstance(PatientRecord([], AT, {"Patient": "x"}).age()[0], Unknown)  # type: ignore[index]
    assert PatientRecord([PATIENT], AT, {"Patient": "x"}).age() == (59, "Patient/p1 1964-06-02")
    # Medications are read from MedicationRequests: statements failing leaves them known.
    meds = PatientRecord([PATIENT], AT, {"MedicationStatement": "x"})
    assert meds.medication("vitamin-k-antagonists") == (False, None)
    meds = PatientRecord([PATIENT], AT, {"MedicationRequest": "x"})
    assert isinstance(meds.medication("vitamin-k-antagonists")[0], Unknown)


def test_a_score_with_an_unknown_input_is_not_computable_and_says_why() -> None:
    why = "Conditions could not be loaded (scoreConditions: fetch failed: ReadTimeout)"
    resources = [PATIENT, condition("af", "49436004", "2020-01-01")]
    result = score_from_fhir("cha2ds2-vasc", PatientRecord(resources, AT, {"Condition": why}), AT)
    assert result.value is None and result.reason == f"not computable: {why}"
    assert result.provenance["atrial_fibrillation"] == "present"
    assert result.provenance["age"] == "present" and result.provenance["chf"] == "unknown"
    assert set(result.unknown) == {"chf", "hypertension", "diabetes", "stroke", "vascular"}
    assert "chf" not in result.inputs  # neither shown as "no" nor defaulted
    as_json = result.to_json()
    assert as_json["unknown"]["chf"] == why and as_json["provenance"]["hba1c"] == "absent"
    # The same record loaded in full: computed, every input present or absent.
    whole = score_from_fhir("cha2ds2-vasc", PatientRecord(resources, AT), AT)
    assert whole.value == 0.0 and not whole.unknown
    assert set(whole.provenance.values()) <= {"present", "absent"}
    # A score that reads none of what failed is computed as usual.
    egfr = score_from_fhir("egfr", PatientRecord(resources, AT, {"Condition": why}), AT)
    assert not egfr.unknown and "missing input(s): creatinine" in str(egfr.reason)


def test_a_plugin_adapter_handing_on_an_unknown_value_is_not_computable() -> None:
    class Plain:
        """A plugin score whose adapter returns a plain dict with the record's value in it."""

        name, unit = "plain", None
        specs = SCORES["cha2ds2-vasc"].specs

        def compute(self, inputs: Any) -> Any:
            return SCORES["cha2ds2-vasc"].compute(inputs)

    inputs = {"age": 70, "sex": "male", "chf": Unknown("Conditions could not be loaded (HTTP 500)")}
    result = compute_result(Plain(), inputs, AT)  # type: ignore[arg-type]
    assert result.value is None
    assert result.reason == "not computable: Conditions could not be loaded (HTTP 500)"
