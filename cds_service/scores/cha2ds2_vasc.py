"""CHA2DS2-VASc: stroke risk in non-valvular atrial fibrillation (points 0-9).

Source: Lip GYH, Nieuwlaat R, Pisters R, Lane DA, Crijns HJGM. Refining clinical risk
stratification for predicting stroke and thromboembolism in atrial fibrillation using a novel risk
factor-based approach: the Euro Heart Survey on Atrial Fibrillation. Chest. 2010;137(2):263-272
(doi:10.1378/chest.09-1584). The 2023 ACC/AHA/ACCP/HRS atrial fibrillation guideline
(doi:10.1161/CIR.0000000000001193) anticoagulates from 2 in men and 3 in women (class 1).

Points: congestive heart failure 1, hypertension 1, age >= 75 years 2, diabetes 1, prior
stroke / TIA / thromboembolism 2, vascular disease (prior MI, PAD, aortic plaque) 1, age 65-74
years 1, female sex 1. Age points are exclusive. Female sex scores 1 as in Lip 2010 (the
reference table gives no "only with another risk factor" rule).

The score is validated only in atrial fibrillation: with `atrial_fibrillation=no` (from FHIR: no
AF condition on record) it is not computable. It is for non-valvular AF: with a mechanical heart
valve or moderate to severe mitral stenosis anticoagulation (a vitamin K antagonist) is indicated
whatever the score (the rule `af-valvular-anticoagulation`), so the score is not consulted.

From FHIR: heart failure, hypertension and diabetes must be active at `at`; stroke/TIA/embolism
and vascular disease count when ever recorded (coronary disease without MI does not count as
vascular disease here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds_service.scores.base import BaseScore, FhirInputs
from cds_service.scores.common import (
    AF_SPEC,
    HBA1C_SPEC,
    age_spec,
    check_af,
    check_hba1c,
    sex_spec,
    yes_no,
)
from cds_service.scores.fhir_inputs import FhirData, PatientRecord

__all__ = ["Cha2ds2Vasc"]


class Cha2ds2Vasc(BaseScore):
    name = "cha2ds2-vasc"
    title = "CHA2DS2-VASc stroke risk in atrial fibrillation"
    unit = "points"
    value_range = (0.0, 9.0)
    specs = (
        age_spec((18, 130)),
        sex_spec(),
        yes_no("chf", "congestive heart failure / LV dysfunction"),
        yes_no("hypertension", "hypertension"),
        yes_no("diabetes", "diabetes mellitus"),
        yes_no("stroke", "prior stroke, TIA or thromboembolism"),
        yes_no("vascular", "vascular disease: prior MI, PAD or aortic plaque"),
        AF_SPEC,
        HBA1C_SPEC,
    )

    def check(self, values: dict[str, Any]) -> list[str]:
        return check_af(values, "CHA2DS2-VASc") + check_hba1c(values)

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        age = values["age"]
        points = 2 if age >= 75 else 1 if age >= 65 else 0
        points += 1 if values["sex"] == "female" else 0
        points += sum(int(values[key]) for key in ("chf", "hypertension", "diabetes", "vascular"))
        points += 2 * int(values["stroke"])
        return float(points), []

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = 1826
    ) -> dict[str, Any]:
        record = PatientRecord.of(resources, at)
        out = FhirInputs()
        out.put("age", record.age())
        out.put("sex", record.sex())
        out.put("chf", record.condition("heart-failure"))
        out.put("hypertension", record.condition("hypertension"))
        out.put("diabetes", record.condition("diabetes"))
        out.put("stroke", record.condition("stroke-tia-thromboembolism", history=True))
        out.put("vascular", record.condition("vascular-disease", history=True))
        out.put("atrial_fibrillation", record.condition("atrial-fibrillation", history=True))
        out.put("hba1c", record.latest_quantity("hba1c", lookback_days))
        return out
