"""HAS-BLED: 1-year risk of major bleeding on anticoagulation in atrial fibrillation (points 0-9).

Source: Pisters R, Lane DA, Nieuwlaat R, de Vos CB, Crijns HJGM, Lip GYH. A novel user-friendly
score (HAS-BLED) to assess 1-year risk of major bleeding in patients with atrial fibrillation: the
Euro Heart Survey. Chest. 2010;138(5):1093-1100 (doi:10.1378/chest.10-0134).

How it is used: the 2023 ACC/AHA/ACCP/HRS atrial fibrillation guideline
(doi:10.1161/CIR.0000000000001193) uses bleeding-risk scores to find and correct modifiable
risks (uncontrolled hypertension, labile INR, alcohol, antiplatelets or NSAIDs) and to review more
often, never alone to withhold anticoagulation; a score of 3 or more marks a higher risk.

One point each: uncontrolled hypertension (systolic > 160 mm[Hg]); abnormal renal function
(dialysis, transplant, or creatinine >= 200 umol/L = 2.26 mg/dL); abnormal liver function
(cirrhosis, or bilirubin > 2x ULN with AST/ALT/ALP > 3x ULN); stroke; bleeding history or
predisposition (e.g. anaemia); labile INR (time in therapeutic range < 60 %); elderly (age > 65,
as in Pisters 2010: 65 itself scores 0); drugs (antiplatelet or NSAID); alcohol >= 8 units/week.

`labile_inr` and `alcohol` are seldom coded: when not given they count as 0 and the reason says
so (the score may then be higher). From FHIR, `labile_inr` is no when no vitamin K antagonist is
active (the item only applies to VKA therapy), `alcohol` is yes with an active alcohol-use
disorder, liver disease is judged from conditions only. Validated only in atrial fibrillation.
Look-back (`lookback_days`, 365): systolic blood pressure and creatinine, the latest of the last
year.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds_service.scores.base import BaseScore, FhirInputs
from cds_service.scores.common import AF_SPEC, age_spec, check_af, sbp_spec, yes_no
from cds_service.scores.fhir_inputs import FhirData, PatientRecord, Unknown
from cds_service.scores.inputs import InputSpec

__all__ = ["HasBled"]

RENAL_CREATININE_MG_DL = 2.26  # 200 umol/L


def _not_given(key: str) -> str:
    return f"{key} not given: counted as 0 (the score may be 1 higher)"


class HasBled(BaseScore):
    name = "has-bled"
    title = "HAS-BLED major bleeding risk in atrial fibrillation"
    unit = "points"
    value_range = (0.0, 9.0)
    specs = (
        sbp_spec(),
        yes_no("renal_disease", "dialysis, kidney transplant or severe chronic kidney disease"),
        InputSpec(
            "creatinine",
            "serum creatinine, >= 2.26 mg/dL scores (mg/dL; umol/L accepted)",
            "number",
            "creatinine",
            (0.1, 30),
            required=False,
        ),
        yes_no("liver_disease", "cirrhosis or significant hepatic dysfunction"),
        yes_no("stroke", "prior stroke"),
        yes_no("bleeding", "major bleeding history or predisposition (e.g. anaemia)"),
        yes_no(
            "labile_inr",
            "labile INR (time in therapeutic range < 60 %)",
            required=False,
            default=False,
            note=_not_given("labile_inr"),
        ),
        age_spec((18, 130)),
        yes_no("drugs", "antiplatelet or NSAID use"),
        yes_no(
            "alcohol",
            "alcohol >= 8 units/week",
            required=False,
            default=False,
            note=_not_given("alcohol"),
        ),
        AF_SPEC,
    )

    def check(self, values: dict[str, Any]) -> list[str]:
        return check_af(values, "HAS-BLED")

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        creatinine = values.get("creatinine")
        renal = values["renal_disease"] or (
            creatinine is not None and creatinine >= RENAL_CREATININE_MG_DL
        )
        items = (
            values["sbp"] > 160,
            renal,
            values["liver_disease"],
            values["stroke"],
            values["bleeding"],
            values["labile_inr"],
            values["age"] > 65,
            values["drugs"],
            values["alcohol"],
        )
        return float(sum(bool(item) for item in items)), []

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = 365
    ) -> dict[str, Any]:
        record = PatientRecord.of(resources, at)
        out = FhirInputs()
        out.put("sbp", record.latest_systolic(lookback_days))
        out.put("renal_disease", record.condition("severe-renal-disease"))
        out.put("creatinine", record.latest_quantity("creatinine", lookback_days))
        out.put("liver_disease", record.condition("liver-disease"))
        out.put("stroke", record.condition("stroke-tia-thromboembolism", history=True))
        bleeding = record.condition("bleeding-history", history=True)
        out.put(
            "bleeding", bleeding if bleeding[0] else record.condition("bleeding-predisposition")
        )
        vka = record.medication("vitamin-k-antagonists")
        if isinstance(vka[0], Unknown):  # whether the item applies is unknown
            out.put("labile_inr", vka)
        elif not vka[0]:
            out.put("labile_inr", (False, None))
        out.put("age", record.age())
        out.put("drugs", record.medication("antiplatelets-nsaids"))
        alcohol = record.condition("alcohol-excess")
        if alcohol[0] or isinstance(alcohol[0], Unknown):
            out.put("alcohol", alcohol)
        out.put("atrial_fibrillation", record.condition("atrial-fibrillation", history=True))
        return out
