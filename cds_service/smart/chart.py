"""Saving an assessment to the chart: a FHIR R4 RiskAssessment written to the EHR's FHIR server
with the clinician's own token (SMART write-back).

Offered only when the tenant enables it (`smart.write_back`, which makes the launch ask for
`patient/RiskAssessment.c`, written `patient/RiskAssessment.write` for a SMART v1 server) and
the token the EHR granted allows creating a RiskAssessment. The score is computed again from the
record at the moment of saving (nothing the browser sent is trusted but the score's name), and
written as:

- `status` final, `subject` the launch's patient, `encounter` the launch's encounter if any,
  `occurrenceDateTime` now, `performer` the signed-in user (`fhirUser`) when the EHR said who;
- `method`: the score (our code system `METHOD_SYSTEM`, code = the score's name);
- `prediction`: for a percentage (ASCVD) the probability as a decimal over 10 years, for a point
  score its points and category as qualitative risk;
- `basis`: the resources the inputs were read from.

The EHR's answer decides: 201 with the new id (from `Location` or the body), else the failure
in words (the OperationOutcome's text), never retried blindly (a create is not idempotent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = [
    "METHOD_SYSTEM",
    "OUTCOMES",
    "SaveResult",
    "can_create",
    "risk_assessment",
    "write_risk_assessment",
]

METHOD_SYSTEM = "urn:cds-service:risk-score"
UCUM = "http://unitsofmeasure.org"
#: What each savable score predicts (eGFR is a measurement, not a risk: it is not saved).
OUTCOMES = {
    "ascvd": ("First hard atherosclerotic cardiovascular event", 10),
    "cha2ds2-vasc": ("Stroke or systemic embolism in atrial fibrillation", 1),
    "has-bled": ("Major bleeding on anticoagulation", 1),
    "ada-diabetes-risk": ("Undiagnosed type 2 diabetes", None),
    "qsofa": ("In-hospital death or prolonged intensive care in suspected infection", None),
}
_SCOPE = re.compile(r"(patient|user)/(RiskAssessment|\*)\.([a-z*]+)")
_MAX_MESSAGE = 300


def can_create(granted: str | None) -> bool:
    """Whether the granted scopes allow creating a RiskAssessment (SMART v2 `c`, v1 `write`
    or `*`)."""
    for scope in (granted or "").split():
        match = _SCOPE.fullmatch(scope)
        if match is None:
            continue
        permission = match.group(3)
        if permission in ("write", "*") or (
            re.fullmatch(r"c?r?u?d?s?", permission) and "c" in permission
        ):
            return True
    return False


def _references(sources: Mapping[str, str]) -> list[str]:
    found = []
    for source in sources.values():
        reference = source.strip().split(" ", 1)[0]
        if re.fullmatch(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}", reference):
            found.append(reference)
    return sorted(set(found))


def risk_assessment(
    *,
    name: str,
    title: str,
    value: float,
    unit: str | None,
    category: str | None,
    sources: Mapping[str, str],
    patient_id: str,
    encounter_id: str | None,
    performer: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The RiskAssessment for one computed score (module doc)."""
    outcome, years = OUTCOMES[name]
    prediction: dict[str, Any] = {"outcome": {"text": outcome}}
    if unit == "%":
        prediction["probabilityDecimal"] = round(value / 100, 4)
        if category:
            prediction["qualitativeRisk"] = {"text": category}
    else:
        points = f"{value:g} {unit or 'points'}"
        prediction["qualitativeRisk"] = {"text": f"{points}: {category}" if category else points}
    if years is not None:
        years_quantity = {"value": years, "unit": "a", "system": UCUM, "code": "a"}
        prediction["whenRange"] = {"high": years_quantity}
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": now.astimezone(UTC).isoformat(timespec="seconds"),
        "method": {
            "coding": [{"system": METHOD_SYSTEM, "code": name, "display": title}],
            "text": title,
        },
        "prediction": [prediction],
    }
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    if performer:
        resource["performer"] = {"reference": performer}
    basis = _references(sources)
    if basis:
        resource["basis"] = [{"reference": reference} for reference in basis]
    return resource


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What the EHR answered: the new resource's reference, or why it was not saved."""

    status: int
    reference: str | None
    message: str


def _outcome_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in body.get("issue") or []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if isinstance(text, str) and text.strip():
                texts.append(text.strip())
    return "; ".join(texts)


def _created_reference(response: httpx.Response) -> str | None:
    location = response.headers.get("location", "")
    match = re.search(r"RiskAssessment/([A-Za-z0-9\-.]{1,64})", location)
    if match:
        return f"RiskAssessment/{match.group(1)}"
    try:
        body = response.json()
    except ValueError:
        return None
    ident = body.get("id") if isinstance(body, dict) else None
    if isinstance(ident, str) and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", ident):
        return f"RiskAssessment/{ident}"
    return None


async def write_risk_assessment(
    http: httpx.AsyncClient, fhir_base: str, token: str, resource: dict[str, Any]
) -> SaveResult:
    """POST the RiskAssessment; the EHR's answer as a SaveResult (never raises for an answer)."""
    try:
        response = await http.post(
            f"{fhir_base.rstrip('/')}/RiskAssessment",
            json=resource,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
                "Prefer": "return=representation",
            },
            timeout=10.0,
        )
    except httpx.HTTPError as exc:
        return SaveResult(0, None, f"the EHR could not be reached ({type(exc).__name__})")
    if response.status_code in (200, 201):
        reference = _created_reference(response)
        if reference is None:
            return SaveResult(
                response.status_code, None, "the EHR accepted it but did not say its id"
            )
        return SaveResult(response.status_code, reference, f"Saved to the chart as {reference}")
    why = _outcome_text(response) or response.reason_phrase or "no reason given"
    message = f"Not saved: the EHR answered {response.status_code} ({why})"
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return SaveResult(response.status_code, None, message)
