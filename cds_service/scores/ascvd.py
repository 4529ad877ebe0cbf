"""ASCVD: 10-year risk of a first hard atherosclerotic cardiovascular event, in percent.

Source: the 2013 ACC/AHA Pooled Cohort Equations. Goff DC Jr, Lloyd-Jones DM, Bennett G, et al.
2013 ACC/AHA Guideline on the Assessment of Cardiovascular Risk. Circulation.
2014;129(25 Suppl 2):S49-S73 (doi:10.1161/01.cir.0000437741.48606.98; J Am Coll Cardiol.
2014;63(25 Pt B):2935-2959), Table A: coefficients, mean individual sums and 10-year baseline
survival per race and sex group; risk = 1 - S0 ** exp(individual sum - mean sum). The USPSTF
(2022, doi:10.1001/jama.2022.13044) and the 2018 AHA/ACC cholesterol guideline
(doi:10.1161/CIR.0000000000000625) both estimate risk with these equations.

Validated ranges (outside: not computable): age 40-79 years, total cholesterol 130-320 mg/dL,
HDL 20-100 mg/dL, systolic BP 90-200 mm[Hg]. The equations are for primary prevention: a record
with clinical ASCVD (MI, coronary heart disease, stroke/TIA, PAD) is not computable.

Race: the African-American equations for "african-american" (US Core race OMB category 2054-5
Black or African American); the white equations for "white" and for "other" (as the guideline
advises for other groups, with a note that they may misestimate risk). When race is not given —
the FHIR record has no US Core race extension, as in every Synthea fixture — the white/other
equations are used and the reason says "race not recorded: computed with the white/other
equations", while the value is still returned; the card must show that note.

Look-back (`lookback_days`, 1826 = 5 years): total and HDL cholesterol, systolic blood pressure,
smoking status and HbA1c are each the latest of the last 5 years, and an older one is missing
(the risk is then not computable: a lipid panel from 8 years ago does not feed today's risk).
The 2019 ACC/AHA primary prevention guideline reassesses risk factors every 4-6 years; the rules
that read the score ask for a blood pressure within 2 years on top (`statin-for-ascvd-risk`).

From FHIR: `bp_treated` is true when an antihypertensive is active *and* hypertension is on
record (a rate-control drug such as verapamil given for AF alone does not make BP "treated");
`diabetes` is an active diabetes condition; a recorded HbA1c is checked for plausibility.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from cds_service.scores.base import BaseScore, FhirInputs
from cds_service.scores.common import HBA1C_SPEC, age_spec, check_hba1c, sbp_spec, sex_spec, yes_no
from cds_service.scores.fhir_inputs import FhirData, PatientRecord, Unknown
from cds_service.scores.inputs import InputSpec

__all__ = ["COEFFICIENTS", "Ascvd"]

_TERMS = (
    "ln_age", "ln_age2", "ln_tc", "ln_age_tc", "ln_hdl", "ln_age_hdl", "ln_tsbp", "ln_age_tsbp",
    "ln_usbp", "ln_age_usbp", "smoker", "ln_age_smoker", "dm", "mean", "s0",
)  # fmt: skip


def _row(*numbers: float) -> dict[str, float]:
    return dict(zip(_TERMS, numbers, strict=True))


# Goff 2013 Table A, in the order of _TERMS.
# fmt: off
COEFFICIENTS: dict[tuple[str, str], dict[str, float]] = {
    ("white", "female"): _row(-29.799, 4.884, 13.540, -3.114, -13.578, 3.149, 2.019, 0, 1.957, 0,
                              7.574, -1.665, 0.661, -29.18, 0.9665),
    ("african-american", "female"): _row(17.114, 0, 0.940, 0, -18.920, 4.475, 29.291, -6.432,
                                         27.820, -6.087, 0.691, 0, 0.874, 86.61, 0.9533),
    ("white", "male"): _row(12.344, 0, 11.853, -2.664, -7.990, 1.769, 1.797, 0, 1.764, 0, 7.837,
                            -1.795, 0.658, 61.18, 0.9144),
    ("african-american", "male"): _row(2.469, 0, 0.302, 0, -0.307, 0, 1.916, 0, 1.809, 0, 0.549,
                                       0, 0.645, 19.54, 0.8954),
}
# fmt: on

RACES = {
    "white": "white",
    "african-american": "african-american",
    "african_american": "african-american",
    "aa": "african-american",
    "black": "african-american",
    "other": "other",
}
NO_RACE_NOTE = "race not recorded: computed with the white/other equations"
OTHER_RACE_NOTE = (
    "race 'other': computed with the white equations, which may over- or underestimate risk"
)


class Ascvd(BaseScore):
    name = "ascvd"
    title = "ASCVD 10-year risk (2013 ACC/AHA Pooled Cohort Equations)"
    unit = "%"
    value_range = (0.0, 100.0)
    specs = (
        age_spec((40, 79)),
        sex_spec(),
        InputSpec(
            "race",
            "race",
            "choice",
            choices=RACES,
            required=False,
            default="white",
            note=NO_RACE_NOTE,
        ),
        InputSpec(
            "total_cholesterol",
            "total cholesterol (mg/dL; mmol/L accepted)",
            "number",
            "cholesterol",
            (50, 1000),
            (130, 320),
        ),
        InputSpec(
            "hdl",
            "HDL cholesterol (mg/dL; mmol/L accepted)",
            "number",
            "cholesterol",
            (5, 300),
            (20, 100),
        ),
        sbp_spec((90, 200)),
        yes_no("bp_treated", "on treatment for high blood pressure"),
        yes_no("smoker", "current smoker"),
        yes_no("diabetes", "diabetes"),
        HBA1C_SPEC,
        yes_no(
            "clinical_ascvd",
            "clinical ASCVD on record (then not applicable)",
            required=False,
            default=False,
        ),
    )

    def check(self, values: dict[str, Any]) -> list[str]:
        problems = check_hba1c(values)
        if values.get("clinical_ascvd"):
            problems.append("clinical ASCVD on record: the equations are for primary prevention")
        return problems

    def calculate(self, values: dict[str, Any]) -> tuple[float, list[str]]:
        race = values["race"]
        notes = [OTHER_RACE_NOTE] if race == "other" else []
        group = "african-american" if race == "african-american" else "white"
        beta = COEFFICIENTS[(group, values["sex"])]
        ln_age = math.log(values["age"])
        ln_tc, ln_hdl = math.log(values["total_cholesterol"]), math.log(values["hdl"])
        ln_sbp = math.log(values["sbp"])
        treated, smoker = float(values["bp_treated"]), float(values["smoker"])
        terms = {
            "ln_age": ln_age,
            "ln_age2": ln_age * ln_age,
            "ln_tc": ln_tc,
            "ln_age_tc": ln_age * ln_tc,
            "ln_hdl": ln_hdl,
            "ln_age_hdl": ln_age * ln_hdl,
            "ln_tsbp": ln_sbp * treated,
            "ln_age_tsbp": ln_age * ln_sbp * treated,
            "ln_usbp": ln_sbp * (1 - treated),
            "ln_age_usbp": ln_age * ln_sbp * (1 - treated),
            "smoker": smoker,
            "ln_age_smoker": ln_age * smoker,
            "dm": float(values["diabetes"]),
        }
        individual = sum(beta[term] * value for term, value in terms.items())
        risk = 1 - beta["s0"] ** math.exp(individual - beta["mean"])
        return round(100 * risk, 2), notes

    def inputs_from_fhir(
        self, resources: FhirData, at: datetime, lookback_days: int = 1826
    ) -> dict[str, Any]:
        record = PatientRecord.of(resources, at)
        out = FhirInputs()
        out.put("age", record.age())
        out.put("sex", record.sex())
        out.put("race", record.race())
        out.put(
            "total_cholesterol",
            record.latest_quantity("total-cholesterol", lookback_days),
        )
        out.put("hdl", record.latest_quantity("hdl-cholesterol", lookback_days))
        out.put("sbp", record.latest_systolic(lookback_days))
        out.put("smoker", record.smoker(lookback_days))
        hypertension = record.condition("hypertension", history=True)
        medication = record.medication("antihypertensives")
        if hypertension[0] is True:
            out.put("bp_treated", medication)
        else:  # unknown when the conditions are
            out.put(
                "bp_treated",
                hypertension if isinstance(hypertension[0], Unknown) else (False, None),
            )
        out.put("diabetes", record.condition("diabetes"))
        out.put("hba1c", record.latest_quantity("hba1c", lookback_days))
        out.put("clinical_ascvd", record.condition("ascvd", history=True))
        return out
