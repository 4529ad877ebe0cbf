"""How the clinician view words a score and its inputs: what a clinician reads, not what the code
names. Nothing here talks to a network; `cds_service.smart.data` calls it while building the view.

- **Headline**: the score in one line with its unit and category, e.g. "10-year ASCVD risk
  15.4 % — intermediate". Categories are the guidelines' own bands (`CATEGORIES`, cited there).
- **Applicability**: a score that does not apply to this patient (CHA2DS2-VASc and HAS-BLED
  without atrial fibrillation, the ADA risk test with diabetes already diagnosed, ASCVD with
  clinical ASCVD or outside ages 40-79, qSOFA without today's vital signs) is left out of the
  view, with the reason in one line, rather than shown as an error.
- **Inputs**: a clinical label ("Systolic BP"), the value with its unit, the kind of source
  ("Lab result", "Vital sign", "Problem list", "Medication list", …) with the resource id kept
  for an on-demand detail, the date as "3 months ago (2026-09-01)", a stale flag when the input
  is older than its freshness window (`FRESH_FOR`, from the clinical content rules), and for a
  missing input what to order or record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cds_service.smart.charts import format_number
from cds_service.smart.unit_text import unit_text
from cds_service.smart.viewmodel import InputRow

__all__ = [
    "CATEGORIES",
    "FRESH_FOR",
    "category",
    "headline",
    "input_rows",
    "not_applicable",
    "relative_age",
    "short_title",
]

#: The one-line name of each score (the calculators' titles are longer).
SHORT_TITLES = {
    "ascvd": "10-year ASCVD risk",
    "cha2ds2-vasc": "CHA2DS2-VASc",
    "has-bled": "HAS-BLED",
    "ada-diabetes-risk": "ADA diabetes risk test",
    "qsofa": "qSOFA",
    "egfr": "eGFR",
}

#: The unit of each input kind (`InputSpec.quantity`): the scores keep inputs in these.
QUANTITY_UNITS = {
    "age": "years",
    "cholesterol": "mg/dL",
    "pressure": "mmHg",
    "hba1c": "%",
    "creatinine": "mg/dL",
    "bmi": "kg/m²",
    "rate": "/min",
    "gcs": "",
}

LABELS = {
    "age": "Age",
    "sex": "Sex",
    "race": "Race (for the equations)",
    "total_cholesterol": "Total cholesterol",
    "hdl": "HDL cholesterol",
    "sbp": "Systolic BP",
    "bp_treated": "On BP treatment",
    "smoker": "Current smoker",
    "diabetes": "Diabetes",
    "hba1c": "HbA1c",
    "clinical_ascvd": "Clinical ASCVD",
    "chf": "Heart failure",
    "hypertension": "Hypertension",
    "stroke": "Stroke, TIA or thromboembolism",
    "vascular": "Vascular disease (MI, PAD, aortic plaque)",
    "atrial_fibrillation": "Atrial fibrillation",
    "renal_disease": "Severe kidney disease",
    "creatinine": "Serum creatinine",
    "liver_disease": "Liver disease",
    "bleeding": "Bleeding history or predisposition",
    "labile_inr": "Labile INR",
    "drugs": "Antiplatelet or NSAID",
    "alcohol": "Alcohol ≥ 8 units a week",
    "gestational_diabetes": "Gestational diabetes",
    "family_history": "Family history of diabetes",
    "physically_active": "Physically active",
    "bmi": "BMI",
    "resp_rate": "Respiratory rate",
    "gcs": "Glasgow Coma Scale",
    "altered_mentation": "Altered mentation",
}

#: What to do when an input is not on record.
TO_RECORD = {
    "total_cholesterol": "order a lipid panel",
    "hdl": "order a lipid panel",
    "sbp": "record a blood pressure",
    "smoker": "record the smoking status",
    "hba1c": "order an HbA1c",
    "creatinine": "order a serum creatinine",
    "bmi": "record height and weight",
    "resp_rate": "record a respiratory rate",
    "gcs": "assess the Glasgow Coma Scale",
    "age": "record the date of birth",
    "sex": "record the administrative sex",
}

_YEAR = timedelta(days=365)
#: How old an input may be and still describe the patient, by (score, input); from the clinical
#: content rules: blood pressure within 2 years and lipids and smoking status within 5 (ACC/AHA
#: 2019 primary prevention: reassess risk factors every 4-6 years; `statin-for-ascvd-risk`),
#: HbA1c, BMI and creatinine within a year (ADA Standards of Care: yearly testing in
#: prediabetes; KDIGO 2012: eGFR at least yearly in CKD), qSOFA's vital signs within a day
#: (Sepsis-3 describes the present).
FRESH_FOR: dict[tuple[str, str], timedelta] = {
    ("ascvd", "total_cholesterol"): 5 * _YEAR,
    ("ascvd", "hdl"): 5 * _YEAR,
    ("ascvd", "sbp"): 2 * _YEAR,
    ("ascvd", "smoker"): 5 * _YEAR,
    ("ascvd", "hba1c"): _YEAR,
    ("has-bled", "sbp"): 2 * _YEAR,
    ("has-bled", "creatinine"): _YEAR,
    ("ada-diabetes-risk", "bmi"): _YEAR,
    ("egfr", "creatinine"): _YEAR,
    ("qsofa", "resp_rate"): timedelta(days=1),
    ("qsofa", "sbp"): timedelta(days=1),
    ("qsofa", "gcs"): timedelta(days=1),
}

NONE_ON_RECORD = "None on record"
ASSUMED = "Assumed (not on record)"

_OBSERVATION_CATEGORIES = {
    "laboratory": "Lab result",
    "vital-signs": "Vital sign",
    "social-history": "Social history",
    "survey": "Questionnaire",
    "exam": "Examination",
}
_RESOURCE_KINDS = {
    "Patient": "Demographics",
    "Condition": "Problem list",
    "MedicationRequest": "Medication list",
    "MedicationStatement": "Medication list (reported)",
    "Procedure": "Procedure history",
    "AllergyIntolerance": "Allergy list",
}
# Without the resource at hand, an Observation's kind follows from what it measures.
_QUANTITY_KINDS = {
    "pressure": "Vital sign",
    "rate": "Vital sign",
    "bmi": "Vital sign",
    "gcs": "Examination",
    "cholesterol": "Lab result",
    "hba1c": "Lab result",
    "creatinine": "Lab result",
}


def _band(bands: list[tuple[float, str]]) -> Callable[[float, Mapping[str, Any]], str]:
    """A category by lower bounds, highest first: the first bound the value reaches."""

    def pick(value: float, _: Mapping[str, Any]) -> str:
        for bound, name in bands:
            if value >= bound:
                return name
        return bands[-1][1]

    return pick


def _cha2ds2_vasc(value: float, inputs: Mapping[str, Any]) -> str:
    # 2019 AHA/ACC/HRS: anticoagulation recommended at >= 2 (men) / >= 3 (women), considered
    # at 1 / 2; the female sex point alone is low risk.
    female = inputs.get("sex") == "female"
    high, moderate = (3, 2) if female else (2, 1)
    if value >= high:
        return "high: anticoagulation recommended"
    if value >= moderate:
        return "moderate: anticoagulation may be considered"
    return "low"


#: Each score's categories, from the guideline that defines them.
CATEGORIES: dict[str, Callable[[float, Mapping[str, Any]], str]] = {
    # 2018 AHA/ACC cholesterol guideline: < 5 low, 5-7.4 borderline, 7.5-19.9 intermediate,
    # >= 20 high.
    "ascvd": _band([(20, "high"), (7.5, "intermediate"), (5, "borderline"), (0, "low")]),
    "cha2ds2-vasc": _cha2ds2_vasc,
    # Pisters 2010: >= 3 high bleeding risk (address the modifiable factors, review often).
    "has-bled": _band([(3, "high bleeding risk"), (0, "low to moderate bleeding risk")]),
    # ADA risk test: >= 5 points, high risk of undiagnosed type 2 diabetes (test for it).
    "ada-diabetes-risk": _band([(5, "high risk: test for diabetes"), (0, "lower risk")]),
    # Sepsis-3: >= 2 of 3 criteria, higher risk of a poor outcome in suspected infection.
    "qsofa": _band([(2, "positive: higher risk of a poor outcome"), (0, "negative")]),
    # KDIGO 2012 GFR categories.
    "egfr": _band(
        [
            (90, "G1, normal or high"),
            (60, "G2, mildly decreased"),
            (45, "G3a, mildly to moderately decreased"),
            (30, "G3b, moderately to severely decreased"),
            (15, "G4, severely decreased"),
            (0, "G5, kidney failure"),
        ]
    ),
}


def short_title(name: str, title: str) -> str:
    """The score's name in a sentence ("CHA2DS2-VASc")."""
    return SHORT_TITLES.get(name, title)


def category(name: str, value: float | None, inputs: Mapping[str, Any]) -> str | None:
    """The guideline category of a computed score; None when not computable or not banded."""
    pick = CATEGORIES.get(name)
    return None if value is None or pick is None else pick(value, inputs)


def headline(name: str, title: str, value: float | None, unit: str | None, cat: str | None) -> str:
    """The score in one line: "10-year ASCVD risk 15.4 % — intermediate"."""
    short = short_title(name, title)
    if value is None:
        return f"{short}: not computable"
    shown = unit_text(unit)
    number = format_number(value, 1)
    text = f"{short} {number}{' ' + shown if shown else ''}"
    return f"{text} — {cat}" if cat else text


def not_applicable(
    name: str,
    value: float | None,
    inputs: Mapping[str, Any],
    *,
    acute_care: bool = False,
) -> str | None:
    """Why the score does not apply to this patient, or None when it does. In acute care (the
    launch's encounter is an emergency or inpatient one) qSOFA applies even before vital
    signs are recorded: the view then says what to record. (A score with unknown inputs is
    never asked: nothing is ruled out on data that failed to load.)"""
    if name in ("cha2ds2-vasc", "has-bled") and inputs.get("atrial_fibrillation") is False:
        return "no atrial fibrillation on record"
    if name == "ada-diabetes-risk" and inputs.get("diabetes") is True:
        return "diabetes already diagnosed"
    if name == "ascvd":
        if inputs.get("clinical_ascvd") is True:
            return "clinical ASCVD on record (secondary prevention)"
        age = inputs.get("age")
        if isinstance(age, int | float) and not 40 <= age <= 79:
            return f"validated for ages 40 to 79 (the patient is {format_number(age)})"
    if name == "qsofa" and value is None and inputs.get("resp_rate") is None and not acute_care:
        return "no vital signs in the last day (an acute-care score)"
    return None


def relative_age(when: date, today: date) -> str:
    """How long ago, in words, with the date: "3 months ago (2026-09-01)"."""
    days = (today - when).days
    if days < 0:
        words = "in the future"
    elif days == 0:
        words = "today"
    elif days == 1:
        words = "yesterday"
    elif days < 31:
        words = f"{days} days ago"
    elif days < 730:
        months = max(1, round(days / 30.44))
        words = f"{months} month{'s' if months > 1 else ''} ago"
    else:
        words = f"{format_number(days / 365.25, 1)} years ago"
    return f"{words} ({when.isoformat()})"


def _age_words(age: timedelta) -> str:
    days = age.days
    if days < 2:
        hours = round(age.total_seconds() / 3600)
        return f"{hours} hours"
    if days < 62:
        return f"{days} days"
    if days < 730:
        return f"{round(days / 30.44)} months"
    return f"{format_number(days / 365.25, 1)} years"


def _window_words(window: timedelta) -> str:
    if window.days >= 365:
        years = round(window.days / 365)
        return f"{years} year{'s' if years > 1 else ''}"
    return f"{window.days} day{'s' if window.days > 1 else ''}"


def _value(value: Any, unit: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | int):
        return f"{format_number(float(value), 1)}{' ' + unit if unit else ''}"
    if isinstance(value, Mapping) and isinstance(value.get("value"), float | int):
        # a quantity kept in its own unit (an HbA1c only checked for plausibility)
        return _value(value["value"], str(value.get("unit") or unit))
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_value(v, '')}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_value(v, "") for v in value)
    return str(value)


def _kind(
    reference: str, resources: Mapping[str, dict[str, Any]], quantity: str | None
) -> str | None:
    resource_type = reference.split("/", 1)[0]
    if resource_type != "Observation":
        return _RESOURCE_KINDS.get(resource_type, resource_type)
    resource = resources.get(reference) or {}
    for concept in resource.get("category") or []:
        for coding in (concept or {}).get("coding") or []:
            kind = _OBSERVATION_CATEGORIES.get(str((coding or {}).get("code")))
            if kind:
                return kind
    return _QUANTITY_KINDS.get(quantity or "", "Observation")


def _date(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def input_rows(
    name: str,
    inputs: Mapping[str, Any],
    sources: Mapping[str, str],
    quantities: Mapping[str, str | None],
    resources: Mapping[str, dict[str, Any]],
    now: datetime,
    *,
    unknown: Mapping[str, str] | None = None,
) -> tuple[InputRow, ...]:
    """The score's inputs as rows. `sources` map a key to ``Type/id date`` (the scores'
    `sources`), `quantities` a key to its kind (`InputSpec.quantity`), `resources` a reference
    to the resource (for an Observation's category); `unknown` the inputs whose data failed
    to load, with why (shown as unknown, never as "no")."""
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    rows = [
        InputRow(key, LABELS.get(key, key.replace("_", " ")), "", None, None, None, None, None, why)
        for key, why in (unknown or {}).items()
    ]
    for key, value in inputs.items():
        if key in (unknown or {}):
            continue
        unit = QUANTITY_UNITS.get(quantities.get(key) or "", "")
        source = sources.get(key, "").strip()
        reference, _, when_text = source.partition(" ")
        if reference:
            kind: str | None = _kind(reference, resources, quantities.get(key))
        elif value is False:
            kind = NONE_ON_RECORD  # the searches found nothing: "no" is the record's silence
        elif value is not None:
            kind = ASSUMED  # a default the score stated (e.g. race: white/other equations)
        else:
            kind = None
        when = _date(when_text) if when_text else None
        stale = None
        if when is not None and key != "age":
            window = FRESH_FOR.get((name, key))
            if window is not None and now - when > window:
                stale = f"{_age_words(now - when)} old (older than {_window_words(window)})"
        shown = _value(value, unit)
        rows.append(
            InputRow(
                key=key,
                label=LABELS.get(key, key.replace("_", " ")),
                value=shown,
                kind=kind,
                reference=reference or None,
                when=relative_age(when.date(), now.date()) if when and key != "age" else None,
                stale=stale,
                to_record=TO_RECORD.get(key) if not shown else None,
            )
        )
    return tuple(rows)
