"""Units as a clinician writes them: the UCUM codes the data carries ("mm[Hg]") made readable
("mmHg") wherever the clinician view shows a unit (scores, inputs, charts and their titles)."""

from __future__ import annotations

__all__ = ["UNIT_TEXT", "unit_text"]

#: How each unit reads (UCUM as the scores report it → what a clinician writes).
UNIT_TEXT = {
    "%": "%",
    "points": "points",
    "mL/min/{1.73_m2}": "mL/min/1.73 m²",
    "mL/min/1.73m2": "mL/min/1.73 m²",
    "mm[Hg]": "mmHg",
    "mg/dL": "mg/dL",
    "kg/m2": "kg/m²",
    "/min": "/min",
}


def unit_text(unit: str | None) -> str:
    """`unit` as shown; a unit not listed is shown as it is."""
    return UNIT_TEXT.get(unit or "", unit or "")
