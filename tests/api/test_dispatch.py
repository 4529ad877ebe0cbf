"""Dispatch follows the body's `hook`; custom reverse-domain hooks; what services receive."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.prefetch.types import PrefetchSpec
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.wire.response import Card, Source
from tests.conformance import assert_conformant_response, assert_operation_outcome
from tests.conftest import FROZEN_NOW

seen: list[HookCall] = []


async def echo(call: HookCall) -> ServiceResult:
    seen.append(call)
    return ServiceResult(
        cards=[Card(summary=f"hook {call.hook}", indicator="info", source=Source(label="echo"))]
    )


ECHO = ServiceDefinition(
    id="echo",
    title="Echo",
    description="Echoes the hook it was called on",
    hooks=("patient-view", "order-sign", "org.example.chart-close"),
    prefetch={
        "patient": PrefetchSpec("Patient/{{context.patientId}}"),
        "me": PrefetchSpec("Practitioner/{{userPractitionerId}}"),
    },
    evaluate=echo,
)


@pytest.fixture
def echo_client(tmp_path: Path, fhir: FhirDouble) -> Any:
    seen.clear()
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path}/f.db"),
        services=[ECHO],
        fhir_transport=fhir.transport,
        clock=lambda: FROZEN_NOW,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def call(client: TestClient, hook: str, context: dict[str, Any], **extra: Any) -> Any:
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, **extra}
    return client.post("/cds-services/echo", json=body)


def test_same_id_dispatches_on_the_body_hook(echo_client: TestClient) -> None:
    a = call(
        echo_client,
        "patient-view",
        {"userId": "Practitioner/1", "patientId": "p"},
        prefetch={"patient": None, "me": None},
    )
    b = call(
        echo_client,
        "order-sign",
        {
            "userId": "Practitioner/1",
            "patientId": "p",
            "draftOrders": {"resourceType": "Bundle", "entry": []},
        },
        prefetch={"patient": None, "me": None},
    )
    assert a.json()["cards"][0]["summary"] == "hook patient-view"
    assert b.json()["cards"][0]["summary"] == "hook order-sign"
    assert [c.hook for c in seen] == ["patient-view", "order-sign"]
    assert type(seen[1].context).__name__ == "OrderSignContext"
    assert seen[0].now == FROZEN_NOW


def test_reverse_domain_hook_takes_any_context(echo_client: TestClient) -> None:
    response = call(
        echo_client,
        "org.example.chart-close",
        {"patientId": "p", "anything": {"nested": [1, 2]}},
        prefetch={"patient": None},
    )
    assert response.status_code == 200
    assert_conformant_response(response.json())
    assert seen[0].raw_context["anything"] == {"nested": [1, 2]}


def test_prefetch_outcomes_reach_the_service(echo_client: TestClient, fhir: FhirDouble) -> None:
    fhir.add("/fhir/Practitioner/dr1", {"resourceType": "Practitioner", "id": "dr1"})
    response = call(
        echo_client,
        "patient-view",
        {"userId": "Practitioner/dr1", "patientId": "p"},
        fhirServer="https://ehr.example.org/fhir",
        prefetch={"patient": None},
    )
    assert response.status_code == 200
    outcomes = seen[0].prefetch
    assert outcomes["patient"].source == "null"
    assert outcomes["me"].source == "fetched" and outcomes["me"].data == {
        "resourceType": "Practitioner",
        "id": "dr1",
    }
    assert [r.url.path for r in fhir.requests] == ["/fhir/Practitioner/dr1"]


def test_token_is_never_logged(
    echo_client: TestClient, caplog: pytest.LogCaptureFixture, fhir: FhirDouble
) -> None:
    token = "eyJ-very-secret-access-token"
    caplog.set_level(logging.DEBUG)
    fhir.add("/fhir/Patient/p", lambda request: (_ for _ in ()).throw(RuntimeError("boom")))
    auth = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 30,
        "scope": "patient/*.read",
        "subject": "cds",
    }
    call(
        echo_client,
        "patient-view",
        {"userId": "Practitioner/1", "patientId": "p"},
        fhirServer="https://ehr.example.org/fhir",
        fhirAuthorization=auth,
    )
    call(
        echo_client,
        "patient-view",
        {"userId": "Practitioner/1"},
        fhirServer="https://ehr.example.org/fhir",
        fhirAuthorization=auth,
    )
    assert caplog.records
    assert token not in caplog.text


def test_unhandled_service_error_is_a_bare_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(call: HookCall) -> ServiceResult:
        raise KeyError(call.raw_context["patientId"])  # the message would carry patient data

    service = ServiceDefinition(
        id="broken",
        title="Broken",
        description="Always fails",
        hooks=("patient-view",),
        evaluate=broken,
    )
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/f.db"), services=[service])
    with TestClient(app) as client:  # raises if anything escapes to the server
        response = client.post(
            "/cds-services/broken",
            json={
                "hook": "patient-view",
                "hookInstance": str(uuid.uuid4()),
                "context": {"userId": "Practitioner/1", "patientId": "JaneDoe-1970"},
            },
        )
    assert response.status_code == 500
    assert_operation_outcome(response.json(), "internal error")
    assert "JaneDoe" not in response.text and "JaneDoe" not in caplog.text
    assert "KeyError" in caplog.text
