"""`GET /cds-services`."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.exceptions import ConfigurationError
from cds_service.main import create_app
from cds_service.prefetch.types import PrefetchSpec
from cds_service.services.definition import ServiceDefinition, ServiceResult
from cds_service.services.registry import ServiceRegistry
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


def test_each_hook_has_its_own_id_by_default(client: TestClient) -> None:
    """Clients that key services by id (the CDS Hooks Sandbox, EHR registration screens) see
    every hook: one id per (service, hook) unless CDS_DISCOVERY_IDS=shared."""
    services = client.get("/cds-services").json()["services"]
    ids = [s["id"] for s in services]
    assert len(ids) == len(set(ids))
    therapy = sorted(s["hook"] for s in services if s["id"].startswith("duplicate-therapy-"))
    assert therapy == ["medication-refill", "order-select", "order-sign"]


def test_one_id_may_serve_several_hooks_when_shared(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/f.db", discovery_ids="shared")
    with TestClient(create_app(settings)) as client:
        services = client.get("/cds-services").json()["services"]
    hooks_by_id: dict[str, list[str]] = {}
    for service in services:
        hooks_by_id.setdefault(service["id"], []).append(service["hook"])
    assert sorted(hooks_by_id["duplicate-therapy"]) == [
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
            "id": "two-hooks-patient-view",
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
            "id": "two-hooks-org.example.custom-hook",
            "title": "Two hooks",
            "description": "Narrows prefetch per hook",
            "prefetch": {"patient": "Patient/{{context.patientId}}"},
            "usageRequirements": "Needs read access to Patient",
        },
    ]


def test_per_hook_ids_for_clients_that_key_services_by_id(tmp_path: Path) -> None:
    """The CDS Hooks Sandbox keeps one entry per id: `per-hook` (the default) gives each hook
    its own id."""
    settings = Settings(database_url=f"sqlite:///{tmp_path}/f.db")
    with TestClient(create_app(settings)) as client:
        services = client.get("/cds-services").json()["services"]
        ids = [s["id"] for s in services]
        assert len(ids) == len(set(ids))
        assert "duplicate-therapy-order-select" in ids and "duplicate-therapy" not in ids
        body = {
            "hook": "encounter-start",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
            "prefetch": {"patient": None, "allergies": None},
        }
        per_hook = client.post("/cds-services/allergy-documentation-encounter-start", json=body)
        assert per_hook.status_code == 200
        # The shared id keeps working, so switching modes never strands a registered EHR.
        assert client.post("/cds-services/allergy-documentation", json=body).status_code == 200
        wrong = client.post("/cds-services/allergy-documentation-order-select", json=body)
        assert wrong.status_code == 400
        assert "order-select" in wrong.json()["issue"][0]["diagnostics"]
        feedback = {
            "feedback": [
                {
                    "card": per_hook.json()["cards"][0]["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-28T10:00:00Z",
                }
            ]
        }
        url = "/cds-services/allergy-documentation-encounter-start/feedback"
        assert client.post(url, json=feedback).json() == {"received": 1, "stored": 1}
        # Stored under the service's own id: a replay through the shared id is a duplicate.
        url = "/cds-services/allergy-documentation/feedback"
        assert client.post(url, json=feedback).json() == {"received": 1, "stored": 0}


def test_per_hook_id_collisions_are_refused() -> None:
    a = ServiceDefinition(
        id="check", title="A", description="a", hooks=("patient-view",), evaluate=_no_cards
    )
    b = ServiceDefinition(
        id="check-patient-view",
        title="B",
        description="b",
        hooks=("order-sign",),
        evaluate=_no_cards,
    )
    with pytest.raises(ConfigurationError, match="check-patient-view"):
        ServiceRegistry([a, b])
