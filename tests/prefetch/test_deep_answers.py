"""A FHIR server's answer nested deeper than the limit fails its key, through a GET, a batch or a
next page, and never the call: the rules' and scores' walkers recurse, so an answer within
orjson's 1,024 levels but deeper than Python's stack could follow used to end the hook call in a
RecursionError (HTTP 500). The other keys load as they would without it."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.prefetch.batch import BatchSupport
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.types import PrefetchOutcome
from tests.conformance import assert_conformant_response
from tests.prefetch.test_batch import DARWIN, SPECS, _request

MARKER = "deep-nesting-goes-here"


def nested(depth: int) -> bytes:
    """A JSON value nested `depth` levels (arrays around a Coding)."""
    coding = b'{"system":"http://loinc.org","code":"8480-6"}'
    return b"[" * (depth - 1) + coding + b"]" * (depth - 1)


def deep_server(depth: int, *, batch: bool) -> tuple[FhirDouble, httpx.MockTransport]:
    """Darwin's record, whose latest blood pressure panel has a component code nested `depth`
    levels (the double cannot serialise it, so its answers are edited on the way out)."""
    bundle = json.loads(DARWIN.read_text())
    panels = [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Observation"
        and entry["resource"]["code"]["coding"][0]["code"] == "85354-9"  # blood pressure panel
    ]
    latest = max(panels, key=lambda panel: panel["effectiveDateTime"])
    latest["component"][0]["code"]["coding"] = MARKER  # a list of lists of ... of a Coding
    double = FhirDouble.from_bundle(bundle, batch=batch)

    def handle(request: httpx.Request) -> httpx.Response:
        answer = double.handle(request)
        content = answer.read().replace(f'"{MARKER}"'.encode(), nested(depth))
        return httpx.Response(answer.status_code, headers=answer.headers, content=content)

    return double, httpx.MockTransport(handle)


def resolve(depth: int, *, batch: bool, max_depth: int) -> dict[str, PrefetchOutcome]:
    double, transport = deep_server(depth, batch=batch)
    request = _request(double)

    async def run() -> dict[str, PrefetchOutcome]:
        support = BatchSupport()
        async with httpx.AsyncClient(transport=transport) as client:
            out = {}
            for _ in range(2):  # the first call learns whether the server takes batches
                out = await resolve_prefetch(
                    request,
                    SPECS,
                    client,
                    deadline_seconds=2.0,
                    max_pages=5,
                    batch=support,
                    max_depth=max_depth,
                )
                await asyncio.sleep(0.01)
        await support.close()
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("batch", [False, True], ids=["gets", "batch"])
def test_an_answer_too_deep_fails_its_key_only(batch: bool) -> None:
    shallow = resolve(3, batch=batch, max_depth=64)
    deep = resolve(990, batch=batch, max_depth=64)
    assert shallow["vitals"].source == "fetched"
    assert deep["vitals"].source == "unavailable"
    assert deep["vitals"].data is None
    assert deep["vitals"].detail is not None
    assert "nested deeper than 64 levels" in deep["vitals"].detail
    others = {k: (o.source, o.data) for k, o in deep.items() if k != "vitals"}
    assert others == {k: (o.source, o.data) for k, o in shallow.items() if k != "vitals"}
    assert any(source == "fetched" for source, _ in others.values())


@pytest.mark.parametrize("batch", [False, True], ids=["gets", "batch"])
def test_the_limit_is_the_one_given(batch: bool) -> None:
    # The Coding sits 106 levels down in the searchset: Bundle, entry, entry, Observation,
    # component, component, code, then the 100 levels of `nested` (the last its own).
    assert resolve(100, batch=batch, max_depth=64)["vitals"].source == "unavailable"
    assert resolve(100, batch=batch, max_depth=128)["vitals"].source == "fetched"


def test_a_hook_call_answers_when_a_fhir_answer_nests_past_the_stack(tmp_path: Path) -> None:
    """Served: 200 with what the other keys give, where it was a 500 (RecursionError)."""
    double, transport = deep_server(990, batch=False)
    patient = double.resources("Patient")[0]["id"]
    latest = max(double.resources("Encounter"), key=lambda e: e["period"]["start"])
    now = datetime.fromisoformat(latest["period"]["start"]).astimezone(UTC)  # scores are read
    settings = Settings(database_url=f"sqlite:///{tmp_path}/a.db", builtin_services=False)
    app = create_app(settings, fhir_transport=transport, clock=lambda: now)
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": double.base_url,
        "context": {"userId": "Practitioner/1", "patientId": patient},
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/cds-services/preventive-care", json=body)
    assert response.status_code == 200, response.text
    assert_conformant_response(response.json())
