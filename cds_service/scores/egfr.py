"""eGFR by the CKD-EPI 2021 creatinine equation (race-free), in mL/min/1.73 m2.

Source: Inker LA, Eneanya ND, Coresh J, et al. New Creatinine- and Cystatin C-Based Equations to
Estimate GFR without Race. N Engl J Med. 2021;385(19):1737-1749 (doi:10.1056/NEJMoa2102953),
as the NKF-ASN Task Force recommends (Delgado C, et al. Am J Kidney Dis. 2022;79(2):268-288,
doi:10.1053/j.ajkd.2021.08.003). The rules' `egfr` value set holds only the CKD-EPI 2021 result
codes, so a laboratory eGFR computed with a race coefficient never stands in for this one.

eGFR = 142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 [if female], with
Scr in mg/dL, k = 0.7 (female) / 0.9 (male), a = -0.241 (female) / -0.302 (male). Adults
(age >= 18) only. Creatinine in umol/L is converted by dividing by 88.4.

From FHIR: creatinine LOINC 2160-0 (serum/plasma), 38483-4 (blood; what Synthea records) or
14682-9 (umol/L), the latest within the look-back (default 365 days).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds_service.scores.base import BaseScore, FhirInputs
from cds_service.scores.common import age_spec, sex_spec
from cds_service.scores.fhir_inputs import FhirData, PatientRecord
from cds_service.scores.inputs import InputSpec

__all__ = ["Egfr", "ckd_epi_2021"]


def ckd_epi_2021(creatinine_mg_dl: float, age: float, female: bool) -> float:
    """The CKD-EPI 2021 creatinine equation, unrounded."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    value: float = 142 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age
    return value * 1.012 if female else value


class Egfr(BaseScore):
    name = "egfr"
    title = "eGFR (CKD-EPI 2021 creatinine, race-free)"
    unit = "mL/min/{1.73_m2}"
    value_range = (0.0, 250.0)
    specs = (
        age_spec((18, 130)),
        sex_spec(),
        InputSpec(
            "creatinine",
            "serum creatinine (mg/dL; umol/L accepted)",
            "number",
            "creatinine",
            (0.1, 30),
        ),
    )

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        value = ckd_epi_2021(values["creatinine"], values["age"], values["sex"] == "female")
        return round(value, 2), []

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = 365
    ) -> dict[str, Any]:
        record = PatientRecord.of(resources, at)
        out = FhirInputs()
        out.put("age", record.age())
        out.put("sex", record.sex())
        out.put("creatinine", record.latest_quantity("creatinine", lookback_days))
        return out
