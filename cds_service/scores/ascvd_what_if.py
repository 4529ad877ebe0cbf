"""What would change a patient's 10-year ASCVD risk: the questions of the ACC/AHA ASCVD Risk
Estimator Plus, answered from the Pooled Cohort Equations and published effect sizes.

- **Optimal risk factors**: the equations for the same age, sex and race with total cholesterol
  170 mg/dL, HDL-C 50 mg/dL, systolic BP 110 mmHg untreated, no diabetes, not smoking (the
  optimal profile of Goff et al., 2013 ACC/AHA risk assessment guideline,
  doi:10.1161/01.cir.0000437741.48606.98).
- **Statin therapy**: moderate intensity lowers LDL-C by 30-49 %, high intensity by 50 % or more
  (2018 AHA/ACC cholesterol guideline, doi:10.1161/CIR.0000000000000625); each 1.0 mmol/L
  (38.67 mg/dL) of LDL-C lowered reduces major vascular events by 22 % (rate ratio 0.78 per
  mmol/L; Cholesterol Treatment Trialists' Collaboration, Lancet 2010;376:1670-81,
  doi:10.1016/S0140-6736(10)61350-5). The lower bound of each band (30 %, 50 %) is used, so the
  estimate is conservative. It needs a measured LDL-C, and is not offered to a patient already
  on a statin.
- **Blood-pressure control**: each 10 mmHg of systolic BP lowered reduces major cardiovascular
  events by 20 % (relative risk 0.80; Ettehad et al., Lancet 2016;387:957-67,
  doi:10.1016/S0140-6736(15)01225-8), down to the 2017 ACC/AHA goal of 130 mmHg.
- **Stopping smoking**: the equations with the patient a non-smoker (their own estimate; the
  benefit accrues over the years after quitting).
- **All of these**: the relative risks multiplied (the effects taken as independent) on the
  risk as a non-smoker.

Every figure is an estimate for a conversation, not a prediction; the view says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.scores import SCORES

__all__ = ["MMOL_PER_MG_DL", "OPTIMAL", "Scenario", "ascvd_what_if"]

OPTIMAL = {
    "total_cholesterol": 170.0,
    "hdl": 50.0,
    "sbp": 110.0,
    "bp_treated": False,
    "diabetes": False,
    "smoker": False,
}
MMOL_PER_MG_DL = 1 / 38.67  # cholesterol
CTT_RATE_RATIO_PER_MMOL = 0.78
STATIN_LDL_REDUCTION = {"moderate": 0.30, "high": 0.50}
BP_RELATIVE_RISK_PER_10 = 0.80
BP_GOAL = 130.0

CTT = "22 % fewer events per 1 mmol/L LDL-C lowered (CTT 2010)"
ETTEHAD = "20 % fewer events per 10 mmHg lowered (Ettehad 2016)"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One what-if: its label, the estimated 10-year risk (%) and how it was estimated."""

    label: str
    risk: float
    basis: str


def _equations(inputs: Mapping[str, Any], **changes: Any) -> float | None:
    result = SCORES["ascvd"].compute({**inputs, **changes})
    return result.value


def _statin_ratio(ldl_mg_dl: float, intensity: str) -> float:
    lowered_mmol = ldl_mg_dl * STATIN_LDL_REDUCTION[intensity] * MMOL_PER_MG_DL
    return float(CTT_RATE_RATIO_PER_MMOL**lowered_mmol)


def ascvd_what_if(
    inputs: Mapping[str, Any], *, ldl_mg_dl: float | None, on_statin: bool
) -> tuple[Scenario, ...]:
    """The scenarios for a patient whose current risk the equations compute (else none): the
    current risk first, then each change that applies, all of them together, and the risk with
    optimal risk factors."""
    current = _equations(inputs)
    if current is None:
        return ()
    found = [Scenario("Current risk", current, "Pooled Cohort Equations")]
    ratios: list[float] = []
    if ldl_mg_dl is not None and ldl_mg_dl > 0 and not on_statin:
        for intensity in ("moderate", "high"):
            ratio = _statin_ratio(ldl_mg_dl, intensity)
            lowered = round(STATIN_LDL_REDUCTION[intensity] * 100)
            found.append(
                Scenario(
                    f"{intensity.capitalize()}-intensity statin",
                    current * ratio,
                    f"LDL-C {ldl_mg_dl:.0f} mg/dL lowered by {lowered} %; {CTT}",
                )
            )
        ratios.append(_statin_ratio(ldl_mg_dl, "high"))
    sbp = inputs.get("sbp")
    if isinstance(sbp, int | float) and sbp > BP_GOAL:
        ratio = BP_RELATIVE_RISK_PER_10 ** ((sbp - BP_GOAL) / 10)
        found.append(
            Scenario(
                f"Systolic BP to {BP_GOAL:.0f} mmHg",
                current * ratio,
                f"{sbp:.0f} to {BP_GOAL:.0f} mmHg; {ETTEHAD}",
            )
        )
        ratios.append(ratio)
    base = current
    changes = len(ratios)
    if inputs.get("smoker") is True:
        quit_risk = _equations(inputs, smoker=False)
        if quit_risk is not None:
            found.append(Scenario("Stop smoking", quit_risk, "the equations for a non-smoker"))
            base = quit_risk
            changes += 1
    if changes >= 2:  # statin (high intensity), BP and smoking, those that apply
        combined = base
        for ratio in ratios:
            combined *= ratio
        found.append(Scenario("All of these", combined, "effects taken as independent"))
    optimal = _equations(inputs, **OPTIMAL)
    if optimal is not None:
        found.append(
            Scenario(
                "Optimal risk factors",
                optimal,
                "total cholesterol 170, HDL-C 50 mg/dL, systolic BP 110 mmHg untreated, "
                "no diabetes, not smoking (Goff 2013)",
            )
        )
    return tuple(found)
