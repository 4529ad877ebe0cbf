"""The one FHIR server double: canned answers, in-memory search, and what it says otherwise."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.types import PrefetchSpec
from cds_service.wire.request import HookRequest
from tests.conftest import load_fixture

JESS = "fhir-r4/synthea/Jess_Braun_eca04de4-760d-41bb-9735-36549acbf46c.json"
PID = "eca04de4-760d-41bb-9735-36549acbf46c"
BASE = "https://fhir.test.invalid/r4"


def server() -> FhirDouble:
    return FhirDouble.from_bundle(load_fixture(JESS))


def ids(bundle: dict[str, Any] | None) -> set[str]:
    assert bundle is not None and bundle["resourceType"] == "Bundle"
    return {e["resource"]["id"] for e in bundle["entry"]}


def get(double: FhirDouble, url: str) -> httpx.Response:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=double.transport) as client:
            return await client.get(url)

    return asyncio.run(run())


def test_read_and_not_found() -> None:
    local = server()
    assert local.get(f"Patient/{PID}")["id"] == PID  # type: ignore[index]
    assert local.get("Patient/nobody") is None
    status, body = local.answer("Patient/nobody")
    assert status == 404 and body["issue"][0]["code"] == "not-found"


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
    assert ids(local.get(f"Observation?patient={PID}&code=4548-4&_count=1&_sort=-date")) == a1c
    assert ids(local.get("Observation?patient=someone-else&code=4548-4")) == set()
    labs = ids(local.get(f"Observation?patient={PID}&category=laboratory"))
    vitals = ids(local.get(f"Observation?patient={PID}&category=vital-signs"))
    assert labs and vitals and not labs & vitals
    one = next(iter(a1c))
    assert ids(local.get(f"Observation?_id={one},x")) == {one}
    emergency = {
        r["id"]
        for r in resources
        if r["resourceType"] == "Encounter" and r["class"]["code"] in ("EMER", "IMP")
    }
    assert emergency and ids(local.get(f"Encounter?patient={PID}&class=EMER,IMP")) == emergency


@pytest.mark.parametrize(
    "url",
    [
        f"Observation?patient={PID}&date=ge2019-01-01",  # a parameter it cannot evaluate
        f"Observation?patient={PID}&code:in=http://example.org/vs",  # a modifier
        f"Observation?patient={PID}&_include=Observation:subject",
    ],
)
def test_a_search_it_cannot_evaluate_is_an_error_not_an_empty_bundle(url: str) -> None:
    response = get(server(), f"{BASE}/{url}")
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-supported"


def test_canned_answers_win_and_anything_else_is_an_error() -> None:
    patient = {"resourceType": "Patient", "id": "p1"}
    double = FhirDouble(responses={"/Patient/p1": patient})
    double.add("MedicationRequest?patient=p1&status=active", {"resourceType": "Bundle"})
    double.add("Observation?patient=p1", {"resourceType": "OperationOutcome"}, status=503)
    assert get(double, f"{BASE}/Patient/p1").json() == patient
    meds = get(double, f"{BASE}/MedicationRequest?patient=p1&status=active")
    assert meds.status_code == 200 and meds.json() == {"resourceType": "Bundle"}
    assert get(double, f"{BASE}/Observation?patient=p1").status_code == 503
    # Without resources the double knows nothing: no read is "not found", no search "empty".
    for url in ("Patient/p2", "Condition?patient=p1"):
        response = get(double, f"{BASE}/{url}")
        assert response.status_code == 400
        assert response.json()["issue"][0]["code"] == "not-supported"
    assert double.requested == [
        "Patient/p1",
        "MedicationRequest?patient=p1&status=active",
        "Observation?patient=p1",
        "Patient/p2",
        "Condition?patient=p1",
    ]


def test_an_empty_record_finds_nothing_and_any_base_is_accepted() -> None:
    double = FhirDouble([], base_url=None)
    double.add("/fhir/Practitioner/dr1", {"resourceType": "Practitioner", "id": "dr1"})
    assert get(double, "https://ehr.example.org/fhir/Practitioner/dr1").status_code == 200
    search = get(double, "https://ehr.example.org/fhir/Condition?patient=p&clinical-status=active")
    assert search.status_code == 200 and search.json()["entry"] == []
    assert get(double, "https://ehr.example.org/fhir/Patient/p").status_code == 404
    assert [r.url.path for r in double.requests] == [
        "/fhir/Practitioner/dr1",
        "/fhir/Condition",
        "/fhir/Patient/p",
    ]


def test_encoded_parameters_are_split_before_decoding() -> None:
    response = get(server(), f"{BASE}/Observation?patient=1%26_include%3D%2A")
    assert response.status_code == 200 and response.json()["entry"] == []


def test_recording_can_be_switched_off() -> None:
    double = FhirDouble.from_bundle(load_fixture(JESS), record=False)
    assert get(double, f"{BASE}/Patient/{PID}").status_code == 200
    assert double.requests == [] and double.requested == []


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

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=local.transport) as client:
            return await resolve_prefetch(request, specs, client, deadline_seconds=2, max_pages=5)

    out = asyncio.run(run())
    assert out["patient"].data["id"] == PID
    assert out["meds"].source == "fetched" and out["meds"].data["total"] == 4
