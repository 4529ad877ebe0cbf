"""ADA type 2 diabetes risk test (points 0-10; >= 5 = high risk of prediabetes / type 2 diabetes).

Source: Bang H, Edwards AM, Bomback AS, et al. Development and validation of a patient
self-assessment score for diabetes risk. Ann Intern Med. 2009;151(11):775-783
(doi:10.7326/0003-4819-151-11-200912010-00005); the ADA / CDC paper test
(https://diabetes.org/diabetes-risk-test) is "adapted from Bang et al." (the gestational-diabetes
item was added by the ADA).

Points: age < 40 / 40-49 / 50-59 / >= 60 years: 0 / 1 / 2 / 3; man 1; woman with gestational
diabetes 1; parent or sibling with diabetes 1; ever diagnosed with high blood pressure 1; not
physically active 1; BMI < 25 / 25-29.9 / 30-39.9 / >= 40 kg/m2: 0 / 1 / 2 / 3. The Asian-American
BMI cut-points are not used (only partly verified in our reference material).

The maximum is 10, not 11: the sex item (man 1) and the gestational-diabetes item (a woman with
gestational diabetes 1) exclude each other, so either sex tops out at 3 + 1 + 1 + 1 + 1 + 3.

Look-back (`lookback_days`, 1826 = 5 years): BMI, the latest of the last 5 years.

Validated in adults (Bang 2009 used NHANES participants aged >= 20 years); a patient already
diagnosed with diabetes is not computable (the test screens for undiagnosed disease). Family
history and physical activity are rarely coded: when not given they count as 0 and the reason
says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds_service.scores.base import BaseScore, FhirInputs
from cds_service.scores.common import age_spec, sex_spec, yes_no
from cds_service.scores.fhir_inputs import FhirData, PatientRecord
from cds_service.scores.inputs import InputSpec

__all__ = ["AdaDiabetesRisk"]


class AdaDiabetesRisk(BaseScore):
    name = "ada-diabetes-risk"
    title = "ADA type 2 diabetes risk test"
    unit = "points"
    value_range = (0.0, 10.0)
    specs = (
        age_spec((20, 130)),
        sex_spec(),
        yes_no("gestational_diabetes", "history of gestational diabetes (women)", required=False),
        yes_no(
            "family_history",
            "parent or sibling with diabetes",
            required=False,
            default=False,
            note="family_history not given: counted as 0 (the score may be 1 higher)",
        ),
        yes_no("hypertension", "ever diagnosed with high blood pressure"),
        yes_no(
            "physically_active",
            "physically active",
            required=False,
            default=True,
            note="physically_active not given: assumed yes (the score may be 1 higher)",
        ),
        InputSpec("bmi", "body mass index (kg/m2)", "number", "bmi", (10, 100)),
        yes_no(
            "diabetes",
            "already diagnosed with diabetes (then not applicable)",
            required=False,
            default=False,
        ),
    )

    def check(self, values: dict[str, Any]) -> list[str]:
        problems = []
        if values.get("diabetes"):
            problems.append("already diagnosed with diabetes: the risk test screens for it")
        if values["sex"] == "male" and values.get("gestational_diabetes"):
            problems.append("contradictory: gestational diabetes recorded for a male patient")
        return problems

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        age, bmi = values["age"], values["bmi"]
        female = values["sex"] == "female"
        notes = []
        if female and values.get("gestational_diabetes") is None:
            notes.append("gestational_diabetes not given: counted as 0 (the score may be 1 higher)")
        points = 3 if age >= 60 else 2 if age >= 50 else 1 if age >= 40 else 0
        points += 0 if female else 1
        points += int(female and bool(values.get("gestational_diabetes")))
        points += int(values["family_history"]) + int(values["hypertension"])
        points += 0 if values["physically_active"] else 1
        points += 3 if bmi >= 40 else 2 if bmi >= 30 else 1 if bmi >= 25 else 0
        return float(points), notes

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = 1826
    ) -> dict[str, Any]:
        record = PatientRecord.of(resources, at)
        out = FhirInputs()
        out.put("age", record.age())
        sex = record.sex()
        out.put("sex", sex)
        if sex is not None and sex[0] == "female":
            out.put("gestational_diabetes", record.condition("gestational-diabetes", history=True))
        out.put("hypertension", record.condition("hypertension", history=True))
        out.put("bmi", record.latest_quantity("bmi", lookback_days))
        out.put("diabetes", record.condition("diabetes"))
        return out
