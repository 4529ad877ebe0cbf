"""Saving to the chart: which grants allow it, the RiskAssessment written, the EHR's answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cds_service.smart.chart import can_create, risk_assessment, write_risk_assessment
from cds_service.smart.oauth import adapt_scopes

UCUM = "http://unitsofmeasure.org"
NOW = datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("granted", "allowed"),
    [
        ("launch patient/RiskAssessment.c", True),
        ("patient/RiskAssessment.cruds", True),
        ("patient/RiskAssessment.cu", True),
        ("patient/*.cruds", True),
        ("user/RiskAssessment.write", True),  # SMART v1
        ("patient/RiskAssessment.*", True),
        ("patient/RiskAssessment.rs", False),
        ("patient/RiskAssessment.read", False),
        ("patient/Observation.c", False),
        ("system/RiskAssessment.c", False),  # not a user's grant
        ("", False),
        (None, False),
    ],
)
def test_which_grants_allow_a_create(granted: str | None, allowed: bool) -> None:
    assert can_create(granted) is allowed


def test_the_write_scope_in_v1_syntax() -> None:
    assert adapt_scopes("patient/RiskAssessment.c patient/Observation.rs", False) == (
        "patient/RiskAssessment.write patient/Observation.read"
    )
    assert adapt_scopes("patient/RiskAssessment.c", True) == "patient/RiskAssessment.c"


def test_a_point_score_as_a_risk_assessment() -> None:
    resource = risk_assessment(
        name="has-bled",
        title="HAS-BLED major bleeding risk in atrial fibrillation",
        value=3.0,
        unit="points",
        category="high bleeding risk",
        sources={
            "sbp": "Observation/bp-1 2026-11-30",
            "drugs": "MedicationRequest/m-2 2026-01-01",
            "age": "Patient/p 1950-01-01",
            "odd": "<script> 2020",
        },
        patient_id="p",
        encounter_id="e-9",
        performer=None,
        now=NOW,
    )
    assert resource == {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": "Patient/p"},
        "encounter": {"reference": "Encounter/e-9"},
        "occurrenceDateTime": "2026-12-04T09:30:15+00:00",
        "method": {
            "coding": [
                {
                    "system": "urn:cds-service:risk-score",
                    "code": "has-bled",
                    "display": "HAS-BLED major bleeding risk in atrial fibrillation",
                }
            ],
            "text": "HAS-BLED major bleeding risk in atrial fibrillation",
        },
        "prediction": [
            {
                "outcome": {"text": "Major bleeding on anticoagulation"},
                "qualitativeRisk": {"text": "3 points: high bleeding risk"},
                "whenRange": {"high": {"value": 1, "unit": "a", "system": UCUM, "code": "a"}},
            }
        ],
        "basis": [
            {"reference": "MedicationRequest/m-2"},
            {"reference": "Observation/bp-1"},
            {"reference": "Patient/p"},
        ],
    }


def _write(handler: Any) -> Any:
    async def run() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await write_risk_assessment(http, "https://ehr/fhir", "tok", {"a": 1})

    return asyncio.run(run())


def test_the_ehrs_answers() -> None:
    seen: list[httpx.Request] = []

    def created_with_body_only(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"resourceType": "RiskAssessment", "id": "77"})

    result = _write(created_with_body_only)
    assert (result.status, result.reference) == (201, "RiskAssessment/77")
    assert seen[0].url == "https://ehr/fhir/RiskAssessment"
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert seen[0].headers["content-type"] == "application/fhir+json"

    result = _write(lambda r: httpx.Response(201))
    assert result.reference is None and "did not say its id" in result.message

    result = _write(lambda r: httpx.Response(500, text="<html>oops</html>"))
    assert result.message == "Not saved: the EHR answered 500 (Internal Server Error)"

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    result = _write(refused)
    assert (result.status, result.reference) == (0, None)
    assert result.message == "the EHR could not be reached (ConnectError)"
