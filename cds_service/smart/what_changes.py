"""What would move a point score to another category, for the scores other than ASCVD (whose
what-if is `cds_service.scores.ascvd_what_if`): each change is the calculator run again on the
patient's inputs with one factor changed, so the points and the category are the score's own.

- HAS-BLED: its modifiable factors (Pisters 2010; 2020 ESC AF guideline: address them rather
  than withhold anticoagulation): systolic BP above 160 mmHg controlled, labile INR, an
  antiplatelet or NSAID stopped, alcohol reduced.
- ADA diabetes risk test: being physically active; a BMI under the next lower band (30, 25).
- CHA2DS2-VASc: nothing is modifiable (diagnoses and age); what is shown is what would raise it
  into the next category, each diagnosis not on record.

Only changes that apply to the patient are listed, each with its score and category.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.scores import SCORES
from cds_service.smart.presentation import category
from cds_service.smart.viewmodel import Change

__all__ = ["what_changes"]

_CHA2DS2_VASC_DIAGNOSES = (
    ("chf", "Heart failure diagnosed"),
    ("hypertension", "Hypertension diagnosed"),
    ("diabetes", "Diabetes diagnosed"),
    ("vascular", "Vascular disease diagnosed"),
    ("stroke", "A stroke, TIA or thromboembolism"),
)


def _has_bled(inputs: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    sbp = inputs.get("sbp")
    if isinstance(sbp, int | float) and sbp > 160:
        found.append((f"Systolic BP {sbp:.0f} controlled to 160 mmHg or below", {"sbp": 160.0}))
    if inputs.get("labile_inr") is True:
        found.append(("INR stabilised (time in range 60 % or more)", {"labile_inr": False}))
    if inputs.get("drugs") is True:
        found.append(("Antiplatelet or NSAID stopped", {"drugs": False}))
    if inputs.get("alcohol") is True:
        found.append(("Alcohol below 8 units a week", {"alcohol": False}))
    return found


def _ada(inputs: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if inputs.get("physically_active") is False:
        found.append(("Physically active", {"physically_active": True}))
    bmi = inputs.get("bmi")
    if isinstance(bmi, int | float):
        for band in (40.0, 30.0, 25.0):
            if bmi >= band:
                found.append((f"BMI below {band:.0f}", {"bmi": band - 0.1}))
                break
    return found


def _cha2ds2_vasc(inputs: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    absent = [(key, label) for key, label in _CHA2DS2_VASC_DIAGNOSES if inputs.get(key) is False]
    return [(label, {key: True}) for key, label in absent]


_CHANGES = {"has-bled": _has_bled, "ada-diabetes-risk": _ada, "cha2ds2-vasc": _cha2ds2_vasc}


def what_changes(name: str, value: float | None, inputs: Mapping[str, Any]) -> tuple[Change, ...]:
    """The changes that apply, each with the recomputed score and its category; for more than
    one lowering change, all of them together. Nothing for a score not computed."""
    changes = _CHANGES.get(name)
    if changes is None or value is None:
        return ()
    current = category(name, value, inputs)
    found = []
    combined: dict[str, Any] = {}
    for label, change in changes(inputs):
        changed = {**inputs, **change}
        result = SCORES[name].compute(changed).value
        if result is None:
            continue
        combined.update(change)
        found.append(Change(label, result, category(name, result, changed) or "", current or ""))
    if name != "cha2ds2-vasc" and len(found) > 1:
        changed = {**inputs, **combined}
        result = SCORES[name].compute(changed).value
        if result is not None:
            found.append(
                Change("All of these", result, category(name, result, changed) or "", current or "")
            )
    return tuple(found)
