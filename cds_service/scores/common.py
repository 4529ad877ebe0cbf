"""Input specs and cross-input checks shared by several scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.scores.inputs import InputSpec

__all__ = [
    "AF_SPEC",
    "HBA1C_SPEC",
    "age_spec",
    "check_af",
    "check_hba1c",
    "sbp_spec",
    "sex_spec",
    "yes_no",
]

SEXES = {
    "male": "male",
    "m": "male",
    "man": "male",
    "female": "female",
    "f": "female",
    "woman": "female",
}


def age_spec(validated: tuple[float, float] | None = None) -> InputSpec:
    return InputSpec("age", "age", "number", "age", (0, 130), validated)


def sex_spec() -> InputSpec:
    return InputSpec("sex", "sex", "choice", choices=SEXES)


def sbp_spec(validated: tuple[float, float] | None = None) -> InputSpec:
    help_text = "systolic blood pressure (mm[Hg]; kPa accepted)"
    return InputSpec("sbp", help_text, "number", "pressure", (50, 300), validated)


def yes_no(key: str, help_text: str, **options: Any) -> InputSpec:
    return InputSpec(key, help_text, "bool", **options)


HBA1C_SPEC = InputSpec(
    "hba1c",
    "latest HbA1c, only checked for plausibility (%; mmol/mol accepted)",
    "number",
    "hba1c",
    (3, 20),
    required=False,
)
AF_SPEC = yes_no(
    "atrial_fibrillation",
    "atrial fibrillation present (the score is validated only in AF)",
    required=False,
    default=True,
)


def check_hba1c(values: Mapping[str, Any]) -> list[str]:
    """An HbA1c below 4.0 % in a patient with diabetes is implausible (contradictory record)."""
    hba1c = values.get("hba1c")
    if values.get("diabetes") and hba1c is not None and hba1c < 4.0:
        return [f"implausible HbA1c {hba1c:.2f} % in a patient with diabetes (below 4.0 %)"]
    return []


def check_af(values: Mapping[str, Any], score: str) -> list[str]:
    if values.get("atrial_fibrillation") is False:
        return [f"{score} is validated only in atrial fibrillation; none recorded"]
    return []
