"""What the clinician view shows, read from the EHR's FHIR server with the session's token.

The reads run in parallel (one round trip at the server's latency, not six); a 401 refreshes the
access token once and retries. Whatever cannot be read becomes a visible problem on the page,
never a blank page; whatever is absent from the record is listed as missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from cds_service.patient import age_in_years
from cds_service.rules.index import parse_instant
from cds_service.scores import SCORES, score_from_fhir
from cds_service.smart.viewmodel import AppView, Banner, Measurement, ScoreView, Series

__all__ = ["SERIES", "build_view", "fetch_patient_data"]

LOINC = "http://loinc.org"


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    key: str
    title: str
    codes: frozenset[str]
    unit: str
    target: tuple[float, float] | None = None
    component: str | None = None  # a component code inside a panel (blood pressure)
    second_component: str | None = None
    second_label: str | None = None


SERIES = (
    SeriesSpec("hba1c", "HbA1c", frozenset({"4548-4", "17856-6", "4549-2"}), "%", (4.0, 5.6)),
    SeriesSpec(
        "bp",
        "Blood pressure (systolic / diastolic)",
        frozenset({"85354-9", "55284-4"}),
        "mm[Hg]",
        (90, 130),
        component="8480-6",
        second_component="8462-4",
        second_label="diastolic",
    ),
    SeriesSpec(
        "ldl", "LDL cholesterol", frozenset({"18262-6", "13457-7", "2089-1"}), "mg/dL", (0, 100)
    ),
    SeriesSpec("chol", "Total cholesterol", frozenset({"2093-3"}), "mg/dL", (0, 200)),
    SeriesSpec(
        "egfr",
        "eGFR",
        frozenset({"33914-3", "62238-1", "98979-8", "48642-3"}),
        "mL/min/1.73m2",
        (60, 120),
    ),
)

QUERIES = {
    "labs": "Observation?patient={id}&category=laboratory",
    "vitals": "Observation?patient={id}&category=vital-signs",
    "social": "Observation?patient={id}&category=social-history",
    "smoking": "Observation?patient={id}&code=http://loinc.org|72166-2",  # often a survey
    "conditions": "Condition?patient={id}",
    "medications": "MedicationRequest?patient={id}&status=active",
}


@dataclass(slots=True)
class PatientData:
    patient: dict[str, Any] | None
    resources: list[dict[str, Any]]
    problems: list[str]


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


async def _search(
    http: httpx.AsyncClient, base: str, url: str, token: TokenProvider, max_pages: int = 10
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _ in range(max_pages):
        response = await _get(http, url, token)
        if response.status_code != 200:
            raise LookupError(f"HTTP {response.status_code}")
        bundle = response.json()
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
            break
        url = next_url
    return found


async def fetch_patient_data(
    http: httpx.AsyncClient, fhir_base: str, patient_id: str, token: TokenProvider
) -> PatientData:
    """The patient and their observations, conditions and medications, read in parallel."""
    base = fhir_base.rstrip("/")

    async def read_patient() -> dict[str, Any]:
        response = await _get(http, f"{base}/Patient/{patient_id}", token)
        if response.status_code != 200:
            raise LookupError(f"HTTP {response.status_code}")
        body: dict[str, Any] = response.json()
        return body

    names = ["patient", *QUERIES]
    tasks = [
        read_patient(),
        *(
            _search(http, base, f"{base}/{q.format(id=patient_id)}", token)
            for q in QUERIES.values()
        ),
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    patient: dict[str, Any] | None = None
    resources: list[dict[str, Any]] = []
    problems: list[str] = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            reason = str(result) if isinstance(result, LookupError) else type(result).__name__
            problems.append(f"{name.capitalize()} could not be loaded ({reason})")
        elif name == "patient":
            assert isinstance(result, dict)
            patient = result
        else:
            assert isinstance(result, list)
            resources += result
    if patient is not None:
        resources.append(patient)
    return PatientData(patient, resources, problems)


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


def _codes(concept: Any) -> set[str]:
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return {
        c["code"]
        for c in codings or []
        if isinstance(c, dict)
        and isinstance(c.get("code"), str)
        and c.get("system") in (LOINC, None)
    }


def _quantity(value: Any) -> tuple[float, str] | None:
    if isinstance(value, dict) and isinstance(value.get("value"), int | float):
        return float(value["value"]), str(value.get("unit") or value.get("code") or "")
    return None


def _series(spec: SeriesSpec, observations: Sequence[dict[str, Any]]) -> Series:
    first: list[Measurement] = []
    second: list[Measurement] = []
    for obs in observations:
        if not (_codes(obs.get("code")) & spec.codes):
            continue
        when = parse_instant(obs.get("effectiveDateTime") or obs.get("issued"))
        if when is None or obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        source = f"Observation/{obs.get('id')}"
        if spec.component is None:
            quantity = _quantity(obs.get("valueQuantity"))
            if quantity:
                first.append(Measurement(when, quantity[0], quantity[1] or spec.unit, source))
            continue
        for component in obs.get("component", []) or []:
            quantity = _quantity(component.get("valueQuantity"))
            codes = _codes(component.get("code"))
            if quantity and spec.component in codes:
                first.append(Measurement(when, quantity[0], spec.unit, source))
            elif quantity and spec.second_component in codes:
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


def build_view(
    data: PatientData,
    *,
    now: datetime,
    need_banner: bool,
    context: str | None,
    style_url: str | None,
    logout_url: str,
    relaunch_url: str | None,
) -> AppView:
    """Scores, trends and gaps for the page."""
    scores = []
    for name, calculator in SCORES.items():
        result = score_from_fhir(name, data.resources, now)
        scores.append(
            ScoreView(
                name,
                calculator.title,
                result.value,
                result.unit,
                result.reason,
                dict(result.inputs),
                dict(result.sources),
                result.computed_at,
            )
        )
    observations = [r for r in data.resources if r.get("resourceType") == "Observation"]
    series = tuple(_series(spec, observations) for spec in SERIES)
    missing = tuple(f"No {s.title} results on record" for s in series if not s.points)
    return AppView(
        banner=_banner(data.patient, now) if need_banner else None,
        scores=tuple(scores),
        series=series,
        context=context,
        missing=missing,
        problems=tuple(data.problems),
        style_url=style_url,
        logout_url=logout_url,
        relaunch_url=relaunch_url,
        generated_at=now.astimezone(UTC),
    )
