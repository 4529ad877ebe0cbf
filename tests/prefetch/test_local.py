"""The in-memory FHIR server used for rule tests, benchmarks and precompute."""

from __future__ import annotations

import asyncio

import httpx

from cds_service.prefetch.local import LocalFhirServer
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.types import PrefetchSpec
from cds_service.wire.request import HookRequest
from tests.conftest import load_fixture

JESS = "fhir-r4/synthea/Jess_Braun_eca04de4-760d-41bb-9735-36549acbf46c.json"
PID = "eca04de4-760d-41bb-9735-36549acbf46c"


def server() -> LocalFhirServer:
    return LocalFhirServer.from_bundle(load_fixture(JESS))


def ids(bundle: dict | None) -> set[str]:  # type: ignore[type-arg]
    assert bundle is not None and bundle["resourceType"] == "Bundle"
    return {e["resource"]["id"] for e in bundle["entry"]}


def test_read_and_not_found() -> None:
    local = server()
    assert local.get(f"Patient/{PID}")["id"] == PID  # type: ignore[index]
    assert local.get("Patient/nobody") is None


def test_searches_filter_like_a_fhir_server() -> None:
    local = server()
    bundle = load_fixture(JESS)
    resources = [e["resource"] for e in bundle["entry"]]
    active = {
        r["id"]
        for r in resources
        if r["resourceType"] == "MedicationRequest" and r["status"] == "active"
    }
    assert ids(local.get(f"MedicationRequest?patient={PID}&status=active")) == active
    a1c = {
        r["id"]
        for r in resources
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "4548-4"
    }
    assert a1c and ids(local.get(f"Observation?patient={PID}&code=4548-4")) == a1c
    assert ids(local.get(f"Observation?patient={PID}&code=http://loinc.org|4548-4")) == a1c
    assert ids(local.get("Observation?patient=someone-else&code=4548-4")) == set()
    labs = ids(local.get(f"Observation?patient={PID}&category=laboratory"))
    vitals = ids(local.get(f"Observation?patient={PID}&category=vital-signs"))
    assert labs and vitals and not labs & vitals


def test_as_a_transport_for_prefetch() -> None:
    local = server()
    request = HookRequest.model_validate(
        {
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "fhirServer": local.base_url,
            "context": {"userId": "Practitioner/1", "patientId": PID},
        }
    )
    specs = {
        "patient": PrefetchSpec("Patient/{{context.patientId}}"),
        "meds": PrefetchSpec("MedicationRequest?patient={{context.patientId}}&status=active"),
    }

    async def run() -> dict:  # type: ignore[type-arg]
        async with httpx.AsyncClient(transport=httpx.MockTransport(local.handle)) as client:
            return await resolve_prefetch(request, specs, client, deadline_seconds=2, max_pages=5)

    out = asyncio.run(run())
    assert out["patient"].data["id"] == PID
    assert out["meds"].source == "fetched" and out["meds"].data["total"] == 4
