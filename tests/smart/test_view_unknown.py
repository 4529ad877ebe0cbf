"""The clinician view's reads: a read that fails, any way, leaves its type unknown to the scores
(never absent), and the page says what could not be loaded."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cds_service.fhir_double import FhirDouble
from cds_service.smart.data import MAX_PAGES, build_view, fetch_patient_data
from tests.conftest import FIXTURES

BASE = "https://ehr.test.invalid/fhir"
ARTURO = FIXTURES / "fhir-r4" / "synthea" / "Arturo_Yundt_beb1b2a4-9198-462f-ae9d-972f173bd2b1.json"
NOW = datetime(2020, 1, 1, tzinfo=UTC)
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception"}],
}


def _server() -> FhirDouble:
    return FhirDouble.from_bundle(json.loads(ARTURO.read_text()), base_url=BASE, record=False)


def _failing(server: FhirDouble, way: str) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/Condition"):
            return server.handle(request)
        if way == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if way == "http-500":
            return httpx.Response(500, json=OUTCOME)
        if way == "operation-outcome":
            return httpx.Response(200, json=OUTCOME)
        if way == "not-json":
            return httpx.Response(200, text="<html>proxy error</html>")
        if way == "too-deep":  # within orjson's 1,024 levels, deeper than CDS_MAX_JSON_DEPTH
            bundle = server.handle(request).json()
            coding: Any = {"system": "http://snomed.info/sct", "code": "49436004"}
            for _ in range(100):
                coding = [coding]
            bundle["entry"][0]["resource"]["code"]["coding"] = coding
            return httpx.Response(200, json=bundle)
        bundle = server.handle(request).json()  # second-page / endless
        entries = bundle["entry"]
        bundle["entry"] = entries[: len(entries) // 2]
        following = request.url if way == "endless" else f"{BASE}/broken"
        bundle["link"] = [{"relation": "next", "url": str(following)}]
        return httpx.Response(200, json=bundle)

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/broken"):
            return httpx.Response(502)
        return handle(request)

    return route


def _view(data: Any) -> Any:
    return build_view(
        data,
        now=NOW,
        need_banner=True,
        context=None,
        style_url=None,
        logout_url="/x",
        relaunch_url=None,
    )


async def _token(_: bool) -> str:
    return "token"


def _read(handler: Any) -> Any:
    async def run() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            patient_id = _server().resources("Patient")[0]["id"]
            return await fetch_patient_data(http, BASE, patient_id, _token)

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("way", "said"),
    [
        ("timeout", "Conditions could not be loaded (ReadTimeout)"),
        ("http-500", "Conditions could not be loaded (HTTP 500)"),
        ("operation-outcome", "answered with OperationOutcome"),
        ("not-json", "the answer is not JSON"),
        ("too-deep", "Conditions could not be loaded (the answer is nested deeper than 64 levels)"),
        ("second-page", "Conditions could be loaded only in part (page 2: HTTP 502)"),
        ("endless", f"only in part (more than {MAX_PAGES} pages)"),
    ],
)
def test_a_failed_condition_read_is_unknown_never_absent(way: str, said: str) -> None:
    data = _read(_failing(_server(), way))
    assert any(said in problem for problem in data.problems), data.problems
    assert "Condition" in data.gaps
    view = _view(data)
    by_name = {score.name: score for score in view.scores}
    for name in ("cha2ds2-vasc", "has-bled"):
        score = by_name[name]  # shown, not left out as "no atrial fibrillation"
        assert score.value is None and score.reason is not None
        assert score.reason.startswith("not computable: Conditions could")
        rows = {row.key: row for row in score.rows}
        assert rows["atrial_fibrillation"].unknown or rows["atrial_fibrillation"].value == "yes"
    assert all("atrial fibrillation" not in why for _, why in view.not_applicable)


def test_with_every_read_answered_the_scores_are_computed() -> None:
    data = _read(_server().handle)
    assert data.problems == [] and data.gaps == {}
    view = _view(data)
    cha2ds2 = next(score for score in view.scores if score.name == "cha2ds2-vasc")
    assert cha2ds2.value is not None and not any(row.unknown for row in cha2ds2.rows)
