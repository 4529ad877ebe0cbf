"""What the clinician view shows, read from the EHR's FHIR server with the session's token.

The reads run in parallel (one round trip at the server's latency, not six); a 401 refreshes the
access token once and retries. Whatever cannot be read becomes a visible problem on the page,
never a blank page; whatever is absent from the record is listed as missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from cds_service.jsondepth import DEFAULT_MAX_DEPTH, TooDeep, loads_within
from cds_service.patient import age_in_years
from cds_service.rules.index import parse_instant
from cds_service.scores import SCORES, score_from_fhir
from cds_service.scores.ascvd_what_if import Scenario, ascvd_what_if
from cds_service.scores.fhir_inputs import PatientRecord, load_failure
from cds_service.scores.provider import SCORE_OBSERVATION_CODES
from cds_service.scores.units import UnitError, convert, normalise_unit
from cds_service.smart.charts import ordered_points
from cds_service.smart.presentation import (
    category,
    headline,
    input_rows,
    not_applicable,
    short_title,
)
from cds_service.smart.viewmodel import AppView, Banner, Measurement, ScoreView, Series
from cds_service.smart.what_changes import what_changes
from cds_service.terminology import coded, value_set

__all__ = ["SERIES", "build_view", "fetch_patient_data"]


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One chart: the Observations of a value set (`rules/_valuesets/<id>`, as the scores and
    rules read them), in `unit` (`kind`: how other units convert, `cds_service.scores.units`)."""

    key: str
    title: str
    value_set: str
    unit: str
    target: tuple[float, float] | None = None
    component: str | None = None  # the value set of a component inside a panel (blood pressure)
    second_component: str | None = None
    second_label: str | None = None
    kind: str | None = None


SERIES = (
    SeriesSpec("hba1c", "HbA1c", "hba1c", "%", (4.0, 5.6), kind="hba1c"),
    SeriesSpec(
        "bp",
        "Blood pressure (systolic / diastolic)",
        "blood-pressure",
        "mm[Hg]",
        (90, 130),
        component="systolic-blood-pressure",
        second_component="diastolic-blood-pressure",
        second_label="diastolic",
        kind="pressure",
    ),
    SeriesSpec("ldl", "LDL cholesterol", "ldl-cholesterol", "mg/dL", (0, 100), kind="cholesterol"),
    SeriesSpec(
        "chol", "Total cholesterol", "total-cholesterol", "mg/dL", (0, 200), kind="cholesterol"
    ),
    SeriesSpec("egfr", "eGFR", "egfr", "mL/min/1.73m2", (60, 120)),
)

EGFR_COMPUTED = "eGFR (computed from serum creatinine, CKD-EPI 2021)"

_SMOKING_CODES = ",".join(f"{s}|{c}" for s, c in sorted(value_set("smoking-status").codes))
_SCORE_CODES = ",".join(f"{s}|{c}" for s, c in sorted(SCORE_OBSERVATION_CODES))
QUERIES = {
    "labs": "Observation?patient={id}&category=laboratory",
    "vitals": "Observation?patient={id}&category=vital-signs",
    "social": "Observation?patient={id}&category=social-history",
    "smoking": "Observation?patient={id}&code=" + _SMOKING_CODES,  # often a survey
    # What the scores read, whatever the category (as the hooks' `scoreObservations`).
    "score results": "Observation?patient={id}&code=" + _SCORE_CODES,
    "conditions": "Condition?patient={id}",
    "medications": "MedicationRequest?patient={id}&status=active",
}
#: The resource type whose score inputs are unknown when a read fails (the others feed charts).
SCORE_READS = {
    "patient": "Patient",
    "score results": "Observation",
    "conditions": "Condition",
    "medications": "MedicationRequest",
}
MAX_PAGES = 10


@dataclass(slots=True)
class PatientData:
    patient: dict[str, Any] | None
    resources: list[dict[str, Any]]
    problems: list[str]
    encounter: dict[str, Any] | None = None  # the launch's encounter, when it could be read
    encounter_problem: str | None = None  # why it could not
    # Resource type → why the scores cannot know it (its read failed, or was cut short).
    gaps: dict[str, str] = field(default_factory=dict)


TokenProvider = Callable[[bool], Awaitable[str]]  # (force_refresh) → access token


async def _get(http: httpx.AsyncClient, url: str, token: TokenProvider) -> httpx.Response:
    response = await http.get(
        url,
        headers={
            "Authorization": f"Bearer {await token(False)}",
            "Accept": "application/fhir+json",
        },
    )
    if response.status_code == 401:  # expired or revoked: refresh once and retry
        response = await http.get(
            url,
            headers={
                "Authorization": f"Bearer {await token(True)}",
                "Accept": "application/fhir+json",
            },
        )
    return response


class Partial(Exception):
    """A search read in part: `found` holds what was read, the message says why it stopped."""

    def __init__(self, why: str, found: list[dict[str, Any]]) -> None:
        super().__init__(why)
        self.found = found


async def _search(
    http: httpx.AsyncClient,
    base: str,
    url: str,
    token: TokenProvider,
    max_pages: int = MAX_PAGES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> list[dict[str, Any]]:
    """Every match, page by page; LookupError when the first page cannot be read (or is no
    search Bundle: an OperationOutcome in its place is a failure, never "none found"), Partial
    when a later one cannot or there are more than `max_pages`."""
    found: list[dict[str, Any]] = []
    for page in range(max_pages):
        try:
            bundle = await _page(http, url, token, max_depth)
        except LookupError as exc:
            if page == 0:
                raise
            raise Partial(f"page {page + 1}: {exc}", found) from exc
        found += [
            e["resource"]
            for e in bundle.get("entry", []) or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
        next_url = next(
            (
                link.get("url")
                for link in bundle.get("link", []) or []
                if link.get("relation") == "next"
            ),
            None,
        )
        if not isinstance(next_url, str) or not next_url.startswith(base + "/"):
            return found
        url = next_url
    raise Partial(f"more than {max_pages} pages", found)


def _answer(response: httpx.Response, max_depth: int) -> Any:
    """The answer's JSON; LookupError (why, as the view shows it) when it is not JSON or nests
    deeper than `max_depth` (`jsondepth`: the scores' walkers recurse)."""
    try:
        return loads_within(response.content, max_depth)
    except TooDeep as exc:
        raise LookupError(f"the answer is {exc}") from None
    except ValueError:
        raise LookupError("the answer is not JSON") from None


async def _page(
    http: httpx.AsyncClient, url: str, token: TokenProvider, max_depth: int
) -> dict[str, Any]:
    response = await _get(http, url, token)
    if response.status_code != 200:
        raise LookupError(f"HTTP {response.status_code}")
    bundle = _answer(response, max_depth)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        kind = bundle.get("resourceType") if isinstance(bundle, dict) else None
        raise LookupError(f"the server answered with {kind or 'no Bundle'}")
    return bundle


async def fetch_patient_data(
    http: httpx.AsyncClient,
    fhir_base: str,
    patient_id: str,
    token: TokenProvider,
    *,
    encounter_id: str | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> PatientData:
    """The patient and their observations, conditions and medications (and the launch's
    encounter), read in parallel; an answer nested deeper than `max_depth` is not loaded."""
    base = fhir_base.rstrip("/")

    async def read(path: str) -> dict[str, Any]:
        response = await _get(http, f"{base}/{path}", token)
        if response.status_code != 200:
            raise LookupError(f"HTTP {response.status_code}")
        body = _answer(response, max_depth)
        if not isinstance(body, dict):
            raise LookupError("the answer is not a FHIR resource")
        return body

    encounter_task = (
        read(f"Encounter/{quote(encounter_id, safe='')}") if encounter_id else _nothing()
    )
    names = ["patient", *QUERIES]
    tasks = [
        read(f"Patient/{patient_id}"),
        *(
            _search(http, base, f"{base}/{q.format(id=patient_id)}", token, max_depth=max_depth)
            for q in QUERIES.values()
        ),
    ]
    *results, encounter = await asyncio.gather(*tasks, encounter_task, return_exceptions=True)
    patient: dict[str, Any] | None = None
    resources: list[dict[str, Any]] = []
    problems: list[str] = []
    gaps: dict[str, str] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, Partial):
            problem = f"{name.capitalize()} could be loaded only in part ({result})"
            problems.append(problem)
            resources += result.found
            if name in SCORE_READS:
                gaps[SCORE_READS[name]] = problem
        elif isinstance(result, BaseException):
            reason = str(result) if isinstance(result, LookupError) else type(result).__name__
            problems.append(f"{name.capitalize()} could not be loaded ({reason})")
            if name in SCORE_READS:
                resource_type = SCORE_READS[name]
                gaps[resource_type] = load_failure(resource_type, reason)
        elif name == "patient":
            assert isinstance(result, dict)
            patient = result
        else:
            assert isinstance(result, list)
            resources += result
    if patient is not None:
        resources.append(patient)
    if isinstance(encounter, BaseException):
        why = str(encounter) if isinstance(encounter, LookupError) else type(encounter).__name__
        return PatientData(patient, resources, problems, None, f"could not be read ({why})", gaps)
    read_encounter = encounter if isinstance(encounter, dict) else None
    return PatientData(patient, resources, problems, read_encounter, None, gaps)


async def _nothing() -> None:
    return None


#: Encounter classes (v3 ActCode) in words, and those of acute care (where qSOFA applies).
ENCOUNTER_CLASSES = {
    "AMB": "Office visit",
    "EMER": "Emergency",
    "IMP": "Inpatient",
    "ACUTE": "Inpatient (acute)",
    "NONAC": "Inpatient (non-acute)",
    "OBSENC": "Observation stay",
    "SS": "Short stay",
    "HH": "Home health",
    "VR": "Virtual visit",
    "PRENC": "Pre-admission",
}
ACUTE_CLASSES = frozenset({"EMER", "IMP", "ACUTE", "OBSENC", "SS"})


def encounter_text(encounter: dict[str, Any]) -> tuple[str, bool]:
    """The encounter in one line ("Emergency: Chest pain — since 2019-10-10, in progress") and
    whether it is acute care."""
    klass = encounter.get("class")
    klass = klass if isinstance(klass, dict) else {}
    code = str(klass.get("code") or "")
    kind = ENCOUNTER_CLASSES.get(code) or klass.get("display")
    types = encounter.get("type") or []
    reason = None
    if types and isinstance(types[0], dict):
        first = types[0]
        codings = first.get("coding") or [{}]
        reason = first.get("text") or (codings[0] or {}).get("display")
    text = ": ".join(str(part) for part in (kind or "Encounter", reason) if part)
    period = encounter.get("period") or {}
    start = str(period.get("start") or "")[:10]
    if start:
        text += f" — since {start}" if not period.get("end") else f" — {start}"
    status = encounter.get("status")
    if status in ("in-progress", "arrived", "triaged", "onleave"):
        text += f", {str(status).replace('-', ' ')}"
    return text, code in ACUTE_CLASSES


def _banner(patient: dict[str, Any] | None, now: datetime) -> Banner | None:
    if patient is None:
        return None
    names = patient.get("name") or [{}]
    chosen = next((n for n in names if n.get("use") == "official"), names[0])
    name = " ".join([*chosen.get("given", []), chosen.get("family", "")]).strip() or "Unnamed"
    age = age_in_years(patient.get("birthDate"), now)
    identifiers = patient.get("identifier") or []
    mrn = next(
        (i.get("value") for i in identifiers if "MR" in str(i.get("type", {}).get("coding", ""))),
        None,
    )
    return Banner(
        name,
        patient.get("gender"),
        patient.get("birthDate"),
        age,
        mrn or (identifiers[0].get("value") if identifiers else None),
    )


def _quantity(value: Any, spec: SeriesSpec) -> tuple[float, str] | None:
    """The value and its unit; in the chart's unit when it converts (it stays as it is if not)."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), int | float):
        return None
    number, unit = float(value["value"]), str(value.get("unit") or value.get("code") or "")
    if spec.kind is not None and unit and normalise_unit(unit) != spec.unit:
        try:
            return convert(spec.kind, number, unit), spec.unit
        except UnitError:
            pass
    return number, unit


def _series(spec: SeriesSpec, observations: Sequence[dict[str, Any]]) -> Series:
    first: list[Measurement] = []
    second: list[Measurement] = []
    wanted = value_set(spec.value_set)
    parts = [value_set(v) if v else None for v in (spec.component, spec.second_component)]
    for obs in observations:
        if not coded(obs.get("code"), wanted):
            continue
        when = parse_instant(obs.get("effectiveDateTime") or obs.get("issued"))
        if when is None or obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        source = f"Observation/{obs.get('id')}"
        if parts[0] is None:
            quantity = _quantity(obs.get("valueQuantity"), spec)
            if quantity:
                first.append(Measurement(when, quantity[0], quantity[1] or spec.unit, source))
            continue
        for component in obs.get("component", []) or []:
            quantity = _quantity(component.get("valueQuantity"), spec)
            if quantity and coded(component.get("code"), parts[0]):
                first.append(Measurement(when, quantity[0], spec.unit, source))
            elif quantity and parts[1] is not None and coded(component.get("code"), parts[1]):
                second.append(Measurement(when, quantity[0], spec.unit, source))
    first.sort(key=lambda m: m.when)
    second.sort(key=lambda m: m.when)
    return Series(
        spec.key,
        spec.title,
        spec.unit,
        tuple(first),
        spec.target,
        tuple(second) if spec.second_component else None,
        spec.second_label,
    )


_STATINS = value_set("statins")
_CREATININE = SeriesSpec("creatinine", "Creatinine", "creatinine", "mg/dL", kind="creatinine")


def _egfr_from_creatinine(
    observations: Sequence[dict[str, Any]], patient: dict[str, Any] | None
) -> tuple[Measurement, ...]:
    """eGFR (CKD-EPI 2021) at each serum creatinine, with the age on its day: the trend most
    records can show, as labs report creatinine more often than a calculated eGFR."""
    birth = (patient or {}).get("birthDate")
    sex = (patient or {}).get("gender")
    if sex not in ("male", "female"):
        return ()
    points = []
    for measured in _series(_CREATININE, observations).points:
        age = age_in_years(birth, measured.when)
        if age is None or measured.unit != "mg/dL":
            continue
        result = SCORES["egfr"].compute({"age": age, "sex": sex, "creatinine": measured.value})
        if result.value is not None:
            source = f"{measured.source}, computed" if measured.source else "computed"
            points.append(Measurement(measured.when, result.value, "mL/min/1.73m2", source))
    return tuple(points)


def _what_if(
    name: str,
    inputs: dict[str, Any],
    series: Sequence[Series],
    resources: Sequence[dict[str, Any]],
) -> tuple[Scenario, ...]:
    """ASCVD's what-if scenarios: from the latest LDL-C charted, unless already on a statin."""
    if name != "ascvd":
        return ()
    ldl = next((s for s in series if s.key == "ldl"), None)
    latest = ordered_points(ldl.points)[-1].value if ldl is not None and ldl.points else None
    on_statin = any(
        r.get("resourceType") == "MedicationRequest"
        and r.get("status") == "active"
        and coded(r.get("medicationCodeableConcept"), _STATINS)
        for r in resources
    )
    return ascvd_what_if(inputs, ldl_mg_dl=latest, on_statin=on_statin)


def build_view(
    data: PatientData,
    *,
    now: datetime,
    need_banner: bool,
    context: str | None,
    style_url: str | None,
    logout_url: str,
    relaunch_url: str | None,
    focus: str | None = None,
    style_css: str = "",
    save_action: str | None = None,
    csrf: str = "",
    notice: tuple[bool, str] | None = None,
    suggestions: tuple[str, ...] = (),
) -> AppView:
    """Scores, trends and gaps for the page: the score of the card (`focus`) first, the scores
    that do not apply to the patient left out (with the reason)."""
    scores = []
    left_out = []
    # What failed to load is unknown, never absent: a score reading it is not computable.
    record = PatientRecord(data.resources, now, data.gaps)
    encounter, acute = (None, False)
    if data.encounter is not None:
        encounter, acute = encounter_text(data.encounter)
    elif data.encounter_problem is not None:
        encounter = f"The encounter {data.encounter_problem}"
    by_reference = {
        f"{r.get('resourceType')}/{r.get('id')}": r for r in data.resources if r.get("id")
    }
    observations = [r for r in data.resources if r.get("resourceType") == "Observation"]
    series = tuple(_series(spec, observations) for spec in SERIES)
    computed = _egfr_from_creatinine(observations, data.patient)
    series = tuple(
        replace(s, points=computed, title=EGFR_COMPUTED)
        if s.key == "egfr" and not s.points and computed
        else s
        for s in series
    )
    for name, calculator in SCORES.items():
        result = score_from_fhir(name, record, now)
        inputs = dict(result.inputs)
        why_not = (
            None  # nothing is ruled out on data that failed to load
            if result.unknown
            else not_applicable(name, result.value, inputs, acute_care=acute)
        )
        if why_not is not None and name != focus:
            left_out.append((short_title(name, calculator.title), why_not))
            continue
        cat = category(name, result.value, inputs)
        quantities = {spec.key: spec.quantity for spec in calculator.specs}
        scores.append(
            ScoreView(
                name,
                calculator.title,
                result.value,
                result.unit,
                result.reason,
                inputs,
                dict(result.sources),
                result.computed_at,
                interpretation=None if why_not is None else f"Does not apply: {why_not}",
                headline=headline(name, calculator.title, result.value, result.unit, cat),
                category=cat,
                rows=input_rows(
                    name,
                    inputs,
                    result.sources,
                    quantities,
                    by_reference,
                    now,
                    unknown=result.unknown,
                ),
                what_if=_what_if(name, inputs, series, data.resources),
                changes=what_changes(name, result.value, inputs),
            )
        )
    scores.sort(key=lambda score: score.name != focus)  # stable: the card's score first
    missing = tuple(f"No {s.title} results on record" for s in series if not s.points)
    return AppView(
        banner=_banner(data.patient, now) if need_banner else None,
        scores=tuple(scores),
        series=series,
        context=context,
        missing=missing,
        problems=tuple(data.problems),
        style_url=style_url,
        style_css=style_css,
        save_action=save_action,
        csrf=csrf,
        notice=notice,
        logout_url=logout_url,
        relaunch_url=relaunch_url,
        generated_at=now.astimezone(UTC),
        focus=focus if any(score.name == focus for score in scores) else None,
        encounter=encounter,
        suggestions=suggestions,
        not_applicable=tuple(left_out),
    )
