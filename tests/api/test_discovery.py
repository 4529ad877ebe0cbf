"""`GET /cds-services`."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.main import create_app
from cds_service.services.definition import PrefetchSpec, ServiceDefinition, ServiceResult
from tests.conformance import assert_no_empty


def test_discovery_lists_conformant_services(client: TestClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"services"}
    assert body["services"]
    assert_no_empty(body)
    for service in body["services"]:
        assert set(service) <= {
            "hook",
            "id",
            "title",
            "description",
            "prefetch",
            "usageRequirements",
            "extension",
        }
        assert service["hook"] and service["id"] and service["description"]
        for template in service.get("prefetch", {}).values():
            assert "{{" in template or "/" in template


def test_one_id_may_serve_several_hooks(client: TestClient) -> None:
    services = client.get("/cds-services").json()["services"]
    hooks_by_id: dict[str, list[str]] = {}
    for service in services:
        hooks_by_id.setdefault(service["id"], []).append(service["hook"])
    assert sorted(hooks_by_id["medication-safety"]) == [
        "medication-refill",
        "order-select",
        "order-sign",
    ]
    pairs = [(s["id"], s["hook"]) for s in services]
    assert len(pairs) == len(set(pairs))


def test_empty_registry(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/f.db"), services=[])
    with TestClient(app) as client:
        assert client.get("/cds-services").json() == {"services": []}


async def _no_cards(call: object) -> ServiceResult:
    return ServiceResult()


def test_prefetch_narrowed_per_hook(tmp_path: Path) -> None:
    service = ServiceDefinition(
        id="two-hooks",
        title="Two hooks",
        description="Narrows prefetch per hook",
        hooks=("patient-view", "org.example.custom-hook"),
        prefetch={
            "patient": PrefetchSpec("Patient/{{context.patientId}}"),
            "user": PrefetchSpec("Practitioner/{{userPractitionerId}}"),
        },
        prefetch_by_hook={"org.example.custom-hook": ("patient",)},
        evaluate=_no_cards,
        usage_requirements="Needs read access to Patient",
    )
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/f.db"), services=[service])
    with TestClient(app) as client:
        services = client.get("/cds-services").json()["services"]
    assert services == [
        {
            "hook": "patient-view",
            "id": "two-hooks",
            "title": "Two hooks",
            "description": "Narrows prefetch per hook",
            "prefetch": {
                "patient": "Patient/{{context.patientId}}",
                "user": "Practitioner/{{userPractitionerId}}",
            },
            "usageRequirements": "Needs read access to Patient",
        },
        {
            "hook": "org.example.custom-hook",
            "id": "two-hooks",
            "title": "Two hooks",
            "description": "Narrows prefetch per hook",
            "prefetch": {"patient": "Patient/{{context.patientId}}"},
            "usageRequirements": "Needs read access to Patient",
        },
    ]
