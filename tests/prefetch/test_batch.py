"""Missing prefetch in one round trip: a FHIR batch to a server whose CapabilityStatement takes
them, parallel GETs otherwise, and parallel GETs again when a batch fails or is slow, within the
call's deadline. Outcomes are the same either way (checked on a Synthea record)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.batch import BatchSupport, supports_batch
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.types import PrefetchOutcome, PrefetchSpec
from cds_service.wire.request import HookRequest
from tests.conftest import FIXTURES

DARWIN = (
    FIXTURES / "fhir-r4" / "synthea" / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
)
SPECS = {
    "patient": PrefetchSpec("Patient/{{context.patientId}}", required=True),
    "conditions": PrefetchSpec("Condition?patient={{context.patientId}}"),
    "vitals": PrefetchSpec("Observation?patient={{context.patientId}}&category=vital-signs"),
    "meds": PrefetchSpec("MedicationRequest?patient={{context.patientId}}&status=active"),
    "same-patient": PrefetchSpec("Patient/{{context.patientId}}"),  # shares the read
    "unsupported": PrefetchSpec("Observation?patient={{context.patientId}}&date=ge2019"),
}


def _double(batch: bool) -> FhirDouble:
    return FhirDouble.from_bundle(json.loads(DARWIN.read_text()), batch=batch)


def _request(double: FhirDouble) -> HookRequest:
    patient = double.resources("Patient")[0]["id"]
    return HookRequest.model_validate(
        {
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "fhirServer": double.base_url,
            "fhirAuthorization": {
                "access_token": "tok",
                "token_type": "Bearer",
                "expires_in": 30,
                "scope": "patient/*.read",
                "subject": "cds",
            },
            "context": {"userId": "Practitioner/u1", "patientId": patient},
        }
    )


Handler = Callable[[httpx.Request], Any]


async def _calls(
    handler: Handler, request: HookRequest, support: BatchSupport, n: int, deadline: float = 2.0
) -> list[dict[str, PrefetchOutcome]]:
    """`n` calls one after the other through one client, as a worker makes them."""
    out = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        for _ in range(n):
            out.append(
                await resolve_prefetch(
                    request, SPECS, client, deadline_seconds=deadline, max_pages=5, batch=support
                )
            )
            await asyncio.sleep(0.01)  # the background metadata read finishes
    await support.close()
    return out


def _run(handler: Handler, request: HookRequest, n: int = 2, **kw: Any) -> list[Any]:
    return asyncio.run(_calls(handler, request, BatchSupport(), n, **kw))


def _same(a: dict[str, PrefetchOutcome], b: dict[str, PrefetchOutcome]) -> None:
    assert {k: (o.source, o.data) for k, o in a.items()} == {
        k: (o.source, o.data) for k, o in b.items()
    }


def test_capability_statements() -> None:
    hapi = {
        "resourceType": "CapabilityStatement",
        "rest": [{"mode": "server", "interaction": [{"code": "transaction"}, {"code": "batch"}]}],
    }
    assert supports_batch(hapi)
    assert not supports_batch({**hapi, "rest": [{"mode": "server", "interaction": []}]})
    assert not supports_batch(
        {**hapi, "rest": [{"mode": "client", "interaction": [{"code": "batch"}]}]}
    )
    assert not supports_batch({"resourceType": "OperationOutcome"})
    assert not supports_batch(None)


def test_a_server_that_takes_batches_gets_one_request_per_call() -> None:
    double = _double(batch=True)
    first, second, third = _run(double.handle, _request(double), n=3)
    # The first call waits for the CapabilityStatement (one read), then sends its batch too.
    posts = [r for r in double.requests if r.method == "POST"]
    assert double.requested.count("metadata") == 1
    assert len(posts) == 3
    assert [r.method for r in double.requests] == ["GET", "POST", "POST", "POST"]
    assert len(double.batches[-1]) == 5  # five distinct queries (the read is shared)
    assert all(r.headers["authorization"] == "Bearer tok" for r in posts)
    assert str(posts[0].url) == double.base_url
    _same(first, second)
    _same(second, third)
    assert (
        second["patient"].source == "fetched"
        and second["same-patient"].data == second["patient"].data
    )
    assert len(second["conditions"].data["entry"]) > 5
    assert second["unsupported"].source == "unavailable"  # the server's 400, as for a GET


def test_concurrent_first_calls_to_a_new_server_share_one_capability_read_and_batch() -> None:
    """Eight calls at once to a server not seen before: one metadata read, which all of them
    wait for, then one batch each, never the fan-out of eight times five GETs."""
    double = _double(batch=True)

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)  # the EHR's round trip
        return double.handle(request)

    async def run() -> list[dict[str, PrefetchOutcome]]:
        support = BatchSupport()
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            out = await asyncio.gather(
                *(
                    resolve_prefetch(
                        _request(double),
                        SPECS,
                        client,
                        deadline_seconds=2.0,
                        max_pages=5,
                        batch=support,
                    )
                    for _ in range(8)
                )
            )
        await support.close()
        return list(out)

    outcomes = asyncio.run(run())
    assert double.requested.count("metadata") == 1
    assert [r.method for r in double.requests].count("POST") == 8
    assert [r.method for r in double.requests].count("GET") == 1  # the metadata read only
    for other in outcomes[1:]:
        _same(outcomes[0], other)
    assert outcomes[0]["patient"].source == "fetched"


def test_a_slow_capability_read_is_not_waited_for_beyond_a_quarter_of_the_deadline() -> None:
    double = _double(batch=True)
    first_get: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metadata"):
            await asyncio.sleep(3)  # far past the patience
        elif not first_get:
            first_get.append(asyncio.get_running_loop().time())
        return double.handle(request)

    async def run() -> tuple[dict[str, PrefetchOutcome], float]:
        loop = asyncio.get_running_loop()
        support = BatchSupport()
        began = loop.time()
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            out = await resolve_prefetch(
                _request(double), SPECS, client, deadline_seconds=1.0, max_pages=5, batch=support
            )
        await support.close()
        # when the GETs began: the double's own searches afterwards are not what is measured
        # (on a loaded machine they took most of a second)
        return out, first_get[0] - began

    outcome, waited = asyncio.run(run())
    assert 0.25 <= waited < 0.6  # waited a quarter of the 1 s deadline, then fetched
    assert [r.method for r in double.requests if r.method == "POST"] == []
    conditions = outcome["conditions"].data
    assert outcome["patient"].source == "fetched" and conditions is not None
    assert len(conditions["entry"]) > 5


def test_a_server_without_batches_gets_parallel_gets() -> None:
    double = _double(batch=False)
    first, second = _run(double.handle, _request(double))
    assert [r for r in double.requests if r.method == "POST"] == []
    _same(first, second)


def test_a_failing_batch_falls_back_to_gets_and_is_not_tried_again() -> None:
    double = _double(batch=True)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            double.requests.append(request)
            return httpx.Response(500, json={"resourceType": "OperationOutcome", "issue": []})
        return double.handle(request)

    first, second, third = _run(handler, _request(double), n=3)
    posts = [r for r in double.requests if r.method == "POST"]
    assert len(posts) == 1  # tried once, by the second call, which then fetched one by one
    _same(first, second)
    _same(second, third)


@pytest.mark.parametrize(
    "answer",
    [
        {"resourceType": "Bundle", "type": "transaction-response", "entry": []},
        {"resourceType": "Bundle", "type": "batch-response", "entry": [{}]},
        {"resourceType": "Patient"},
    ],
    ids=["other-type", "wrong-count", "not-a-bundle"],
)
def test_a_malformed_batch_answer_falls_back(answer: dict[str, Any]) -> None:
    double = _double(batch=True)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, content=orjson.dumps(answer))
        return double.handle(request)

    first, second = _run(handler, _request(double))
    _same(first, second)


def test_a_slow_batch_falls_back_within_the_deadline() -> None:
    double = _double(batch=True)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            await asyncio.sleep(5)  # far past the deadline
        return double.handle(request)

    async def run() -> tuple[list[Any], float]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        out = await _calls(handler, _request(double), BatchSupport(), 2, deadline=1.0)
        return out, loop.time() - began

    (first, second), elapsed = asyncio.run(run())
    assert elapsed < 2.5  # two calls, each within its 1 s deadline
    _same(first, second)


def test_a_paginated_search_in_a_batch_is_completed_by_its_next_links() -> None:
    double = _double(batch=True)
    patient = double.resources("Patient")[0]["id"]
    page2 = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "m2"}}],
    }
    double.responses[f"MedicationRequest?patient={patient}&status=active"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{double.base_url}/page-2"}],
        "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "m1"}}],
    }
    double.responses["page-2"] = page2
    specs_all = dict(SPECS)
    specs_all["meds"] = PrefetchSpec(SPECS["meds"].template, all_pages=True)

    async def run() -> list[dict[str, PrefetchOutcome]]:
        support = BatchSupport()
        out = []
        async with httpx.AsyncClient(transport=httpx.MockTransport(double.handle)) as client:
            for _ in range(2):
                out.append(
                    await resolve_prefetch(
                        _request(double),
                        specs_all,
                        client,
                        deadline_seconds=2,
                        max_pages=5,
                        batch=support,
                    )
                )
                await asyncio.sleep(0.01)
        await support.close()
        return out

    first, second = asyncio.run(run())
    meds = second["meds"].data
    assert meds is not None and [e["resource"]["id"] for e in meds["entry"]] == ["m1", "m2"]
    _same(first, second)


def test_the_hook_route_sends_one_batch_per_call_and_answers_the_same_cards(
    tmp_path: Any,
) -> None:
    import uuid
    from datetime import UTC, datetime

    from fastapi.testclient import TestClient

    from cds_service.config import Settings
    from cds_service.main import create_app

    double = _double(batch=True)
    patient = double.resources("Patient")[0]["id"]
    last = max(double.resources("Encounter"), key=lambda e: e["period"]["start"])
    now = datetime.fromisoformat(last["period"]["start"]).astimezone(UTC)
    settings = Settings(database_url=f"sqlite:///{tmp_path}/b.db", builtin_services=False)
    app = create_app(settings, fhir_transport=double.transport, clock=lambda: now)
    cards = []
    posts = []
    counts = []
    with TestClient(app) as client:
        for _ in range(3):
            before = len(double.requests)
            body = {
                "hook": "patient-view",
                "hookInstance": str(uuid.uuid4()),
                "fhirServer": double.base_url,
                "context": {"userId": "Practitioner/1", "patientId": patient},
            }
            answer = client.post("/cds-services/preventive-care", json=body)
            assert answer.status_code == 200, answer.text
            cards.append(sorted(c["summary"] for c in answer.json()["cards"]))
            sent = double.requests[before:]
            posts.append([r for r in sent if r.method == "POST"])
            counts.append(len(sent))
    assert cards[0] == cards[1] == cards[2] and len(cards[0]) == 2  # Darwin's two cards
    assert len(posts[0]) == len(posts[1]) == len(posts[2]) == 1
    # The first call read the CapabilityStatement, then sent its batch; the others made one
    # request in all: the batch of every missing query.
    assert counts == [2, 1, 1], counts
    assert len(double.batches[-1]) >= 8
