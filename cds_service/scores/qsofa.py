"""qSOFA (quick Sequential Organ Failure Assessment, Sepsis-3), points 0-3; >= 2 = positive.

Sources: Seymour CW, Liu VX, Iwashyna TJ, et al. Assessment of Clinical Criteria for Sepsis
(Sepsis-3). JAMA. 2016;315(8):762-774 (doi:10.1001/jama.2016.0288); Singer M, et al. The Third
International Consensus Definitions for Sepsis and Septic Shock (Sepsis-3). JAMA.
2016;315(8):801-810 (doi:10.1001/jama.2016.0287). Evans L, et al. Surviving Sepsis Campaign 2021
(doi:10.1097/CCM.0000000000005337) advises against qSOFA as the only screening tool.

Scope: adults (18 or older) with suspected infection outside the ICU, as Seymour et al. derived
and validated it; an `age` under 18 makes the score not computable (children's normal
respiratory rate and blood pressure differ; pediatric sepsis has its own criteria). Without an
age the score is computed (the CLI may give only the vital signs).

One point each: respiratory rate >= 22/min; systolic blood pressure <= 100 mm[Hg]; altered
mentation, i.e. Glasgow Coma Scale < 15 (give `gcs`, or `altered_mentation` yes/no). A GCS and an
`altered_mentation` that disagree are contradictory (not computable).

From FHIR: respiratory rate LOINC 9279-1, systolic 8480-6 (alone or in the 85354-9 panel), GCS total
9269-2, each the latest within a short look-back (default 1 day: qSOFA describes the present).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from cds_service.scores.base import BaseScore, FhirInputs
from cds_service.scores.common import age_spec, sbp_spec, yes_no
from cds_service.scores.fhir_inputs import FhirData, PatientRecord
from cds_service.scores.inputs import InputSpec

__all__ = ["Qsofa"]


class Qsofa(BaseScore):
    name = "qsofa"
    title = "qSOFA (Sepsis-3)"
    unit = "points"
    value_range = (0.0, 3.0)
    specs = (
        InputSpec("resp_rate", "respiratory rate (/min)", "number", "rate", (2, 80)),
        sbp_spec(),
        InputSpec(
            "gcs", "Glasgow Coma Scale total (3-15)", "number", "gcs", (3, 15), required=False
        ),
        yes_no("altered_mentation", "altered mentation (GCS < 15)", required=False),
        replace(age_spec((18, 130)), required=False),
    )

    def check(self, values: dict[str, Any]) -> list[str]:
        gcs, altered = values.get("gcs"), values.get("altered_mentation")
        if gcs is None and altered is None:
            return ["missing input(s): gcs or altered_mentation"]
        if gcs is not None and altered is not None and (gcs < 15) != altered:
            return [
                f"contradictory: gcs {gcs:g} but altered_mentation {'yes' if altered else 'no'}"
            ]
        return []

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        gcs = values.get("gcs")
        altered = gcs < 15 if gcs is not None else bool(values["altered_mentation"])
        points = int(values["resp_rate"] >= 22) + int(values["sbp"] <= 100) + int(altered)
        return float(points), []

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = 1
    ) -> dict[str, Any]:
        record = PatientRecord.of(resources, at)
        out = FhirInputs()
        out.put("age", record.age())
        out.put("resp_rate", record.latest_quantity("respiratory-rate", lookback_days))
        out.put("sbp", record.latest_systolic(lookback_days))
        out.put("gcs", record.latest_quantity("glasgow-coma-score", lookback_days))
        return out
