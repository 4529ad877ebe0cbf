"""Every official example request, and every R4 hook-library context, gets a conformant answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from tests.conformance import assert_conformant_response, assert_operation_outcome
from tests.conftest import CDS_FIXTURES, FROZEN_NOW, load_fixture

# R4 examples of the hook library (other blocks on those pages are STU3/DSTU2 variants).
R4_CONTEXTS = [
    "allergyintolerance-create__01__context-allergyintolerance-create.json",
    "appointment-book__01__context-appointment-book.json",
    "appointment-book__02__context-appointment-book.json",
    "encounter-discharge__01__context-encounter-discharge.json",
    "encounter-start__01__context-encounter-start.json",
    "medication-refill__01__context-medication-refill.json",
    "order-dispatch__01__context-order-dispatch.json",
    "order-select__01__context-order-select.json",
    "order-select__02__context-order-select.json",
    "order-sign__01__context-order-sign.json",
    "order-sign__02__context-order-sign.json",
    "patient-view__02__context-patient-view.json",
    "problem-list-item-create__01__context-problem-list-item-create.json",
]
LIBRARY_HOOKS = {
    "patient-view",
    "order-select",
    "order-sign",
    "appointment-book",
    "encounter-start",
    "encounter-discharge",
    "order-dispatch",
    "medication-refill",
    "allergyintolerance-create",
    "problem-list-item-create",
}

# The hooks whose service needs nothing from the FHIR server for the official context.
NOTHING_TO_FETCH = {"order-dispatch"}


@pytest.fixture
def client(settings: Settings, fhir: FhirDouble) -> Iterator[TestClient]:
    """The service as shipped: built-in services and the bundled rule pack (which alone serves
    patient-view), the EHR's FHIR server a double."""
    app = create_app(settings, fhir_transport=fhir.transport, clock=lambda: FROZEN_NOW)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def service_for(client: TestClient, hook: str) -> str:
    services = client.get("/cds-services").json()["services"]
    service_id: str = next(s["id"] for s in services if s["hook"] == hook)
    return service_id


def test_every_library_hook_has_a_service(client: TestClient) -> None:
    hooks = {s["hook"] for s in client.get("/cds-services").json()["services"]}
    assert hooks >= LIBRARY_HOOKS


def test_all_r4_library_contexts_are_listed() -> None:
    on_disk = {p.name for p in (CDS_FIXTURES / "hooks-library").glob("*.json")}
    # Every listed example exists (so the fixtures are there at all) ...
    assert set(R4_CONTEXTS) <= on_disk
    # ... and, as a guard, a new R4 example in the fixtures must be added above.
    firsts = {n for n in on_disk if "__01__" in n and n.split("__")[0] in LIBRARY_HOOKS}
    assert firsts <= set(R4_CONTEXTS)


@pytest.mark.parametrize("name", R4_CONTEXTS)
def test_library_context_wrapped_in_a_request(
    name: str, client: TestClient, fhir: FhirDouble
) -> None:
    hook = name.split("__")[0]
    request = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": load_fixture(f"cds-hooks/hooks-library/{name}")["context"],
    }
    fhir.add("/fhir/Patient/1288992", {"resourceType": "Patient", "id": "1288992"})
    response = client.post(f"/cds-services/{service_for(client, hook)}", json=request)
    assert response.status_code == 200, response.text
    assert_conformant_response(response.json())
    # Whatever the service fetched, it fetched from the given server only.
    assert fhir.requests or hook in NOTHING_TO_FETCH
    assert all(str(r.url).startswith("https://ehr.example.org/fhir/") for r in fhir.requests)


@pytest.mark.parametrize("name", R4_CONTEXTS)
def test_library_context_without_server_is_200_or_412(name: str, client: TestClient) -> None:
    """No prefetch and no fhirServer: 412 where the service needs data it could not obtain
    (always for a required key), naming the key; 200 only when the service could decide."""
    hook = name.split("__")[0]
    request = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": load_fixture(f"cds-hooks/hooks-library/{name}")["context"],
    }
    service = service_for(client, hook)
    response = client.post(f"/cds-services/{service}", json=request)
    required = _required_keys(client, service, hook)
    if required:
        assert response.status_code == 412, response.text
        assert_operation_outcome(response.json(), *(f"prefetch.{k}" for k in required))
    elif response.status_code == 412:
        keys = _keys(client, service, hook)
        fields = [e for i in response.json()["issue"] for e in i.get("expression", [])]
        assert fields and all(f.removeprefix("prefetch.") in keys for f in fields), fields
    else:
        assert response.status_code == 200, response.text
        assert_conformant_response(response.json())


def _keys(client: TestClient, service_id: str, hook: str) -> list[str]:
    registry = client.app.state.cds.registry  # type: ignore[attr-defined]
    return list(registry.endpoint(service_id).service.prefetch_for(hook))


def _required_keys(client: TestClient, service_id: str, hook: str) -> list[str]:
    """The required keys of the service a discovery id (shared or per-hook) reaches."""
    registry = client.app.state.cds.registry  # type: ignore[attr-defined]
    service = registry.endpoint(service_id).service
    return [k for k, spec in service.prefetch_for(hook).items() if spec.required]


def test_spec_patient_view_example(client: TestClient, fhir: FhirDouble) -> None:
    request = load_fixture("cds-hooks/spec-v2/index__02__request-patient-view.json")
    fhir.add("/Patient/1288992", {"resourceType": "Patient", "id": "1288992"})
    response = client.post(f"/cds-services/{service_for(client, 'patient-view')}", json=request)
    assert response.status_code == 200, response.text
    assert_conformant_response(response.json())
    # The bearer token from fhirAuthorization went to the FHIR server, and nowhere else.
    assert fhir.requests
    for sent in fhir.requests:
        assert sent.headers["authorization"] == "Bearer some-opaque-fhir-access-token"
        assert str(sent.url).startswith("http://hooks.smarthealthit.org:9080/")
    assert "some-opaque-fhir-access-token" not in response.text


def test_spec_order_sign_pagination_example(client: TestClient, fhir: FhirDouble) -> None:
    request = load_fixture("cds-hooks/spec-v2/index__04__request-order-sign.json")
    response = client.post(f"/cds-services/{service_for(client, 'order-sign')}", json=request)
    assert response.status_code == 200, response.text
    assert_conformant_response(response.json())


def test_spec_extension_example_lacks_patient_id(client: TestClient) -> None:
    """The spec's extension example omits the required patientId: 400 naming the field."""
    request = load_fixture("cds-hooks/spec-v2/index__31__request-patient-view.json")
    response = client.post(f"/cds-services/{service_for(client, 'patient-view')}", json=request)
    assert response.status_code == 400
    assert_operation_outcome(response.json(), "context.patientId")


@pytest.mark.parametrize("name", ["captured-patient-view.json", "captured-order-select.json"])
def test_sandbox_captured_requests(name: str, client: TestClient, fhir: FhirDouble) -> None:
    captured: dict[str, Any] = load_fixture(f"cds-hooks/sandbox-client/{name}")
    body = captured["body"]
    response = client.post(f"/cds-services/{service_for(client, body['hook'])}", json=body)
    assert response.status_code == 200, response.text
    assert_conformant_response(response.json())
