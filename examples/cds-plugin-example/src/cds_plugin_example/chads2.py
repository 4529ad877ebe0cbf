"""CHADS2: stroke risk in non-valvular atrial fibrillation.

Source: Gage BF, Waterman AD, Shannon W, et al. Validation of clinical classification schemes for
predicting stroke: results from the National Registry of Atrial Fibrillation. JAMA.
2001;285(22):2864-2870 (doi:10.1001/jama.285.22.2864). Points: congestive heart failure 1,
hypertension 1, age 75 or more 1, diabetes 1, prior stroke or TIA 2 (0 to 6). Validated only in
atrial fibrillation, like CHA2DS2-VASc (which superseded it), whose FHIR reading it shares.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds_service.scores.base import BaseScore, FhirInputs
from cds_service.scores.common import age_spec, check_af, yes_no
from cds_service.scores.fhir_inputs import FhirData, PatientRecord


class Chads2(BaseScore):
    name = "chads2"
    title = "CHADS2 stroke risk in atrial fibrillation (Gage 2001)"
    unit = "points"
    value_range = (0.0, 6.0)
    specs = (
        age_spec((18, 130)),
        yes_no("chf", "congestive heart failure"),
        yes_no("hypertension", "hypertension"),
        yes_no("diabetes", "diabetes mellitus"),
        yes_no("stroke", "prior stroke or TIA"),
        yes_no(
            "atrial_fibrillation",
            "atrial fibrillation present (the score is validated only in AF)",
            required=False,
            default=True,
        ),
    )

    def check(self, values: dict[str, Any]) -> list[str]:
        return check_af(values, "CHADS2")

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        points = int(values["age"] >= 75)
        points += sum(int(values[key]) for key in ("chf", "hypertension", "diabetes"))
        points += 2 * int(values["stroke"])
        return float(points), []

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = 1826
    ) -> dict[str, Any]:
        record = PatientRecord.of(resources, at)
        out = FhirInputs()
        out.put("age", record.age())
        out.put("chf", record.condition("heart-failure"))
        out.put("hypertension", record.condition("hypertension"))
        out.put("diabetes", record.condition("diabetes"))
        out.put("stroke", record.condition("stroke-tia-thromboembolism", history=True))
        out.put("atrial_fibrillation", record.condition("atrial-fibrillation", history=True))
        return out
