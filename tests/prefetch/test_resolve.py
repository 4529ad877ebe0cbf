"""Prefetch resolution: present, null, OperationOutcome, absent, paginated, deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from cds_service.exceptions import PreconditionFailed
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.types import PrefetchOutcome, PrefetchSpec
from cds_service.wire.request import HookRequest

BASE = "https://ehr.example.org/fhir"
PATIENT = {"resourceType": "Patient", "id": "p1"}
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
SPECS = {
    "patient": PrefetchSpec("Patient/{{context.patientId}}", required=True),
    "meds": PrefetchSpec("MedicationRequest?patient={{context.patientId}}&status=active"),
}


def make_request(
    prefetch: dict[str, Any] | None = None, server: bool = True, token: bool = True
) -> HookRequest:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/u1", "patientId": "p1"},
    }
    if server:
        body["fhirServer"] = BASE
    if server and token:
        body["fhirAuthorization"] = {
            "access_token": "tok",
            "token_type": "Bearer",
            "expires_in": 30,
            "scope": "patient/*.read",
            "subject": "cds",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return HookRequest.model_validate(body)


def bundle(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if next_url:
        out["link"] = [{"relation": "next", "url": next_url}]
    return out


def resolve(
    request: HookRequest,
    handler: Any,
    specs: dict[str, PrefetchSpec] = SPECS,
    deadline: float = 2.0,
    max_pages: int = 20,
) -> dict[str, PrefetchOutcome]:
    async def run() -> dict[str, PrefetchOutcome]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await resolve_prefetch(
                request, specs, client, deadline_seconds=deadline, max_pages=max_pages
            )

    return asyncio.run(run())


def never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected fetch of {request.url}")


def test_complete_prefetch_fetches_nothing() -> None:
    out = resolve(make_request({"patient": PATIENT, "meds": bundle()}), never_called)
    assert out["patient"].data == PATIENT and out["patient"].source == "prefetch"
    assert out["meds"].source == "prefetch"


def test_null_is_known_empty_and_never_refetched() -> None:
    out = resolve(make_request({"patient": PATIENT, "meds": None}), never_called)
    assert out["meds"].data is None and out["meds"].source == "null" and out["meds"].available


def test_absent_keys_are_fetched_in_parallel_with_the_token() -> None:
    seen: list[httpx.Request] = []
    both_in_flight = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 2:
            both_in_flight.set()
        # Each answer waits until both requests are in flight: only parallel fetches finish.
        await asyncio.wait_for(both_in_flight.wait(), timeout=1.0)
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json=PATIENT)
        return httpx.Response(200, json=bundle({"resourceType": "MedicationRequest", "id": "m"}))

    out = resolve(make_request(), handler)
    assert out["patient"].source == "fetched" and out["patient"].data == PATIENT
    assert out["meds"].source == "fetched"
    urls = sorted(str(r.url) for r in seen)
    assert urls == [f"{BASE}/MedicationRequest?patient=p1&status=active", f"{BASE}/Patient/p1"]
    assert all(r.headers["authorization"] == "Bearer tok" for r in seen)


def test_keys_with_the_same_query_share_one_fetch() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json=PATIENT)
        return httpx.Response(200, json=bundle())

    specs = {
        **SPECS,
        "scorePatient": PrefetchSpec("Patient/{{context.patientId}}"),
        "scoreMeds": PrefetchSpec("MedicationRequest?patient={{context.patientId}}&status=active"),
    }
    out = resolve(make_request(), handler, specs)
    assert sorted(seen) == [
        f"{BASE}/MedicationRequest?patient=p1&status=active",
        f"{BASE}/Patient/p1",
    ]
    assert list(out) == ["patient", "meds", "scorePatient", "scoreMeds"]
    for key, outcome in out.items():
        assert outcome.key == key and outcome.source == "fetched"
    assert out["scorePatient"].data == out["patient"].data == PATIENT
    # A key sent in the prefetch is used as sent, and answers the key of the same query: the
    # patient is not fetched at all.
    seen.clear()
    out = resolve(make_request({"patient": PATIENT}), handler, specs)
    assert out["patient"].source == "prefetch" and out["scorePatient"].source == "prefetch"
    assert out["scorePatient"].data == PATIENT
    assert seen.count(f"{BASE}/Patient/p1") == 0


def test_slots_bound_the_fetches_in_flight() -> None:
    in_flight = 0
    most = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=bundle())

    specs = {
        f"k{n}": PrefetchSpec(f"Observation?patient={{{{context.patientId}}}}&n={n}")
        for n in range(6)
    }

    async def run() -> dict[str, PrefetchOutcome]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await resolve_prefetch(
                make_request(),
                specs,
                client,
                deadline_seconds=2,
                max_pages=1,
                slots=asyncio.Semaphore(2),
            )

    out = asyncio.run(run())
    assert {key: o.source for key, o in out.items()} == dict.fromkeys(specs, "fetched")
    assert most == 2


def test_partial_prefetch_fetches_only_what_is_missing() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=bundle())

    out = resolve(make_request({"patient": PATIENT}), handler)
    assert seen == ["/fhir/MedicationRequest"]
    assert out["patient"].source == "prefetch" and out["meds"].source == "fetched"


def test_open_server_without_token_is_fetched_without_authorization() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=PATIENT)

    resolve(make_request({"meds": None}, token=False), handler)
    assert seen and "authorization" not in seen[0].headers


def test_required_key_unobtainable_without_server_is_412() -> None:
    with pytest.raises(PreconditionFailed) as raised:
        resolve(make_request(server=False), never_called)
    assert raised.value.status_code == 412
    assert [i.field for i in raised.value.issues] == ["prefetch.patient"]


def test_optional_key_unobtainable_is_left_out() -> None:
    out = resolve(make_request({"patient": PATIENT}, server=False), never_called)
    assert out["meds"].source == "unavailable" and not out["meds"].available


@pytest.mark.parametrize("status", [401, 403, 500, 503])
def test_server_errors_make_required_data_unobtainable(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text="<html>error</html>")

    with pytest.raises(PreconditionFailed):
        resolve(make_request({"meds": None}), handler)


def test_connection_error_is_unobtainable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    out = resolve(make_request({"patient": PATIENT}), handler)
    assert out["meds"].source == "unavailable"
    assert out["meds"].detail is not None and "ConnectError" in out["meds"].detail


def test_read_404_is_known_empty() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json=OUTCOME)

    out = resolve(make_request({"meds": None}), handler)
    assert out["patient"].source == "null" and out["patient"].data is None


def test_deadline_makes_slow_keys_unobtainable() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=bundle())

    out = resolve(make_request({"patient": PATIENT}), slow, deadline=0.05)
    assert out["meds"].source == "unavailable" and out["meds"].detail == "deadline exceeded"
    with pytest.raises(PreconditionFailed):
        resolve(make_request({"meds": None}), slow, deadline=0.05)


@pytest.mark.parametrize(
    ("policy", "source"), [("omit", "unavailable"), ("pass", "operation-outcome")]
)
def test_operation_outcome_policies(policy: Any, source: str) -> None:
    specs = {"meds": PrefetchSpec(SPECS["meds"].template, on_error=policy)}
    out = resolve(make_request({"meds": OUTCOME}), never_called, specs)
    assert out["meds"].source == source
    assert (out["meds"].data == OUTCOME) is (policy == "pass")


def test_operation_outcome_fail_policy_is_412() -> None:
    with pytest.raises(PreconditionFailed) as raised:
        resolve(make_request({"patient": OUTCOME, "meds": None}), never_called)
    assert raised.value.issues[0].field == "prefetch.patient"


def test_bundle_carrying_an_error_outcome_counts_as_an_error() -> None:
    specs = {"meds": PrefetchSpec(SPECS["meds"].template, on_error="omit")}
    out = resolve(make_request({"meds": bundle(OUTCOME)}), never_called, specs)
    assert out["meds"].source == "unavailable"
    warning = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "informational"}],
    }
    out = resolve(make_request({"meds": bundle(warning)}), never_called, specs)
    assert out["meds"].source == "prefetch"


def test_fetched_operation_outcome_follows_the_policy() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=OUTCOME)

    out = resolve(make_request({"patient": PATIENT}), handler)
    assert out["meds"].source == "unavailable"


def test_pages_followed_only_when_the_key_needs_all_pages() -> None:
    page2 = f"{BASE}/MedicationRequest?patient=p1&_page=2"
    first = bundle({"resourceType": "MedicationRequest", "id": "m1"}, next_url=page2)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=bundle({"resourceType": "MedicationRequest", "id": "m2"}))

    out = resolve(make_request({"patient": PATIENT, "meds": first}), handler)
    assert seen == [] and len(out["meds"].data["entry"]) == 1  # type: ignore[index]

    specs = {"meds": PrefetchSpec(SPECS["meds"].template, all_pages=True)}
    out = resolve(make_request({"meds": first}), handler, specs)
    assert seen == [page2]
    merged = out["meds"].data
    assert merged is not None
    assert [e["resource"]["id"] for e in merged["entry"]] == ["m1", "m2"]
    assert merged["total"] == 2 and "link" not in merged and out["meds"].complete


def test_next_link_outside_the_fhir_server_is_not_followed() -> None:
    first = bundle(
        {"resourceType": "MedicationRequest", "id": "m1"},
        next_url="https://attacker.example.net/steal?page=2",
    )
    specs = {"meds": PrefetchSpec(SPECS["meds"].template, all_pages=True, required=True)}
    with pytest.raises(PreconditionFailed) as raised:
        resolve(make_request({"meds": first}), never_called, specs)
    assert "outside fhirServer" in raised.value.issues[0].message
    optional = {"meds": PrefetchSpec(SPECS["meds"].template, all_pages=True)}
    out = resolve(make_request({"meds": first}), never_called, optional)
    assert not out["meds"].complete and len(out["meds"].data["entry"]) == 1  # type: ignore[index]


def test_page_limit() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["_page"])
        return httpx.Response(
            200,
            json=bundle(
                {"resourceType": "MedicationRequest", "id": f"m{page}"},
                next_url=f"{BASE}/MedicationRequest?_page={page + 1}",
            ),
        )

    first = bundle(
        {"resourceType": "MedicationRequest", "id": "m1"},
        next_url=f"{BASE}/MedicationRequest?_page=2",
    )
    specs = {"meds": PrefetchSpec(SPECS["meds"].template, all_pages=True)}
    out = resolve(make_request({"meds": first}), handler, specs, max_pages=3)
    assert len(out["meds"].data["entry"]) == 3  # type: ignore[index]
    assert not out["meds"].complete and "3 pages" in (out["meds"].detail or "")


def test_template_not_applicable_is_neither_fetched_nor_412() -> None:
    specs = {"encounter": PrefetchSpec("Encounter/{{context.encounterId}}", required=True)}
    out = resolve(make_request(), never_called, specs)
    assert out["encounter"].source == "not-applicable"
