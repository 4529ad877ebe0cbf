"""The score cache is asked whether the score-only prefetch can be skipped only when the EHR
left some prefetch key out: with everything sent there is nothing to skip (and a call saves the
cache round trips)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from bench.rules_engine import last_encounter, resolve
from cds_service.config import default_rules_dir
from cds_service.fhir_double import FhirDouble
from cds_service.rules.pipeline import FhirSource, evaluate_call
from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import RuleStats, services_from_rules
from cds_service.scores.sources import ComputedScores
from cds_service.wire.request import HookRequest
from tests.conftest import FIXTURES


class CountingScores(ComputedScores):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, ...]] = []

    async def cached(self, names: Sequence[str], *, patient_id: str, tenant: str) -> bool:
        self.asked.append(tuple(names))
        return False


def _call(prefetch: dict[str, Any] | None) -> tuple[CountingScores, list[str]]:
    path = sorted((FIXTURES / "fhir-r4" / "synthea").glob("[!_]*.json"))[0]
    server = FhirDouble.from_bundle(json.loads(path.read_text()), record=False)
    patient = server.resources("Patient")[0]["id"]
    _, now = last_encounter(server)
    scores = CountingScores()
    ruleset = load_ruleset(default_rules_dir(), known_score_names())
    service = next(
        s
        for s in services_from_rules(ruleset, scores=scores, stats=RuleStats())
        if s.id == "preventive-care"
    )
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": server.base_url,
        "context": {"userId": "Practitioner/1", "patientId": patient},
    }
    request = HookRequest.model_validate(body)

    async def run() -> list[str]:
        sent = prefetch
        if sent is None:  # every key of the service, answered from the record
            resolved = await resolve(server, service, request, now)
            sent = {k: o.data for k, o in resolved.items() if o.available}
        fetched: list[str] = []

        def fhir(request: httpx.Request) -> httpx.Response:
            fetched.append(str(request.url))
            return server.handle(request)

        full = HookRequest.model_validate({**body, "prefetch": sent})
        async with httpx.AsyncClient(transport=httpx.MockTransport(fhir)) as client:
            await evaluate_call(
                service,
                full,
                FhirSource(client, max_pages=10),
                now=now,
                budget_seconds=10.0,
                prefetch_deadline_seconds=5.0,
                strict=False,
            )
        return fetched

    return scores, asyncio.run(run())


def test_with_every_key_sent_the_score_cache_is_not_asked() -> None:
    scores, fetched = _call(None)
    assert scores.asked == []
    assert fetched == []


def test_with_a_key_left_out_the_score_cache_is_asked_before_fetching() -> None:
    scores, _ = _call(None)
    assert scores.asked == []
    scores, fetched = _call({})  # the EHR sent nothing
    assert len(scores.asked) == 1 and "ascvd" in scores.asked[0]
    assert fetched  # nothing cached: everything is fetched, the score data included
