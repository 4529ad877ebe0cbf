"""A built-in service that could not obtain the data it needs answers 412, like the rule
services: an EHR must be able to tell "checked, nothing found" from "not checked"."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.services.builtin import builtin_services
from tests.conftest import FIXTURES, FROZEN_NOW

LIBRARY = FIXTURES / "cds-hooks" / "hooks-library"


def official(hook: str, number: str = "01") -> dict[str, Any]:
    path = LIBRARY / f"{hook}__{number}__context-{hook}.json"
    context: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["context"]
    return context


# (service, official hook-library example "hook:number", the key it cannot decide without)
CASES = [
    ("duplicate-therapy", "order-sign:01", "activeMedications"),
    ("duplicate-therapy", "order-select:01", "activeMedications"),
    ("appointment-conflict", "appointment-book:02", "bookedAppointments"),
    ("duplicate-record-check", "problem-list-item-create:01", "conditions"),
    ("duplicate-record-check", "allergyintolerance-create:01", "allergies"),
    ("allergy-documentation", "order-select:01", "allergies"),
    ("allergy-documentation", "encounter-start:01", "allergies"),
]


def _body(example: str, **extra: Any) -> dict[str, Any]:
    hook, number = example.split(":")
    return {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": official(hook, number),
        **extra,
    }


@pytest.mark.parametrize(("service", "hook", "key"), CASES)
def test_no_prefetch_and_no_fhir_server_is_412_naming_the_key(
    client: TestClient, service: str, hook: str, key: str
) -> None:
    response = client.post(f"/cds-services/{service}", json=_body(hook))
    assert response.status_code == 412, response.text
    fields = [e for issue in response.json()["issue"] for e in issue.get("expression", [])]
    assert f"prefetch.{key}" in fields


def _failing_searches(request: httpx.Request) -> httpx.Response:
    """A FHIR server whose every search fails with an OperationOutcome."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    return httpx.Response(500, json=outcome)


@pytest.mark.parametrize(("service", "hook", "key"), CASES)
def test_a_failing_fhir_server_is_412(
    settings: Settings, service: str, hook: str, key: str
) -> None:
    app = create_app(
        settings,
        services=builtin_services(),
        fhir_transport=httpx.MockTransport(_failing_searches),
        clock=lambda: FROZEN_NOW,
    )
    body = _body(hook, fhirServer="https://ehr.example.org/fhir")
    with TestClient(app) as client:
        response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 412, response.text


@pytest.mark.parametrize(("service", "hook", "key"), CASES)
def test_known_empty_data_is_checked_and_answered(
    client: TestClient, service: str, hook: str, key: str
) -> None:
    """`null` prefetch means "the search found nothing": checked, so 200."""
    prefetch: dict[str, Any] = {key: None}
    if service == "allergy-documentation":
        prefetch["patient"] = {"resourceType": "Patient", "id": "1288992"}
    response = client.post(f"/cds-services/{service}", json=_body(hook, prefetch=prefetch))
    assert response.status_code == 200, response.text
