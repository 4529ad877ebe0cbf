"""The path production takes: `cds-service serve` with the real clock (no frozen `now`), the
bundled rules and built-in services, every fixture patient sent through every service and hook
it advertises, with the prefetch its discovery templates ask for. No rule may error or run past
its budget on any call (rule tests freeze the clock at whole seconds; the server's clock has
microseconds, which is how date arithmetic broke in production before).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.rules_engine import context_for, last_encounter
from cds_service.exceptions import RequestError
from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.templates import render_template
from cds_service.prefetch.types import PrefetchSpec
from cds_service.rules.pipeline import validate_context
from cds_service.wire.request import HookRequest
from tests.conftest import FIXTURES
from tests.serving import serving

SYNTHEA = FIXTURES / "fhir-r4" / "synthea"
RULE_OUTCOME = re.compile(r'^cds_rule_evaluations_total\{rule="([^"]+)",status="([^"]+)"\} (\S+)$')


def _patients() -> list[Path]:
    found = sorted(p for p in SYNTHEA.glob("*.json") if not p.name.startswith("_"))
    assert len(found) >= 15, f"the Synthea fixture patients are missing under {SYNTHEA}"
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Generous budgets: a rule that runs past 10 s hangs; shorter ones measure the machine.
    with serving(
        tmp_path_factory.mktemp("served"),
        CDS_AUTH="disabled",
        CDS_RULES_RELOAD_SECONDS="0",
        CDS_RULE_BUDGET_SECONDS="10",
        CDS_HOOK_BUDGET_SECONDS="20",
        CDS_PREFETCH_DEADLINE_SECONDS="10",
    ) as base:
        yield base


def _prefetch(local: FhirDouble, request: HookRequest, templates: dict[str, str]) -> dict[str, Any]:
    """What an EHR sends: each discovery template answered from the patient's record."""
    specs = {
        key: PrefetchSpec(template, all_pages=True)
        for key, template in templates.items()
        if render_template(template, request.context) is not None
    }

    async def fetch() -> dict[str, Any]:
        transport = httpx.MockTransport(local.handle)
        async with httpx.AsyncClient(transport=transport) as client:
            outcomes = await resolve_prefetch(
                request, specs, client, deadline_seconds=30, max_pages=100
            )
        return {key: o.data for key, o in outcomes.items() if o.available}

    return asyncio.run(fetch())


def test_every_fixture_patient_through_every_service_on_the_real_clock(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        services = client.get("/cds-services").json()["services"]
        assert len(services) >= 8
        calls = 0
        skipped: set[str] = set()
        for path in _patients():
            local = FhirDouble.from_bundle(json.loads(path.read_text()))
            patient = local.resources("Patient")[0]["id"]
            encounter, _ = last_encounter(local)
            for entry in services:
                context = context_for(entry["hook"], patient, encounter, datetime.now(UTC))
                body: dict[str, Any] = {
                    "hook": entry["hook"],
                    "hookInstance": str(uuid.uuid4()),
                    "fhirServer": local.base_url,
                    "context": context,
                }
                request = HookRequest.model_validate(body)
                try:
                    validate_context(request)
                except RequestError:
                    skipped.add(entry["hook"])  # a context the bench cannot build
                    continue
                body["prefetch"] = _prefetch(local, request, entry.get("prefetch", {}))
                del body["fhirServer"]  # everything is prefetched, as an EHR would send it
                response = client.post(f"/cds-services/{entry['id']}", json=body)
                assert response.status_code in (200, 412), (entry["id"], response.text)
                calls += 1
        assert calls >= 15 * 8
        assert skipped <= {"order-dispatch"}, skipped
        metrics = client.get("/metrics").text
    outcomes: dict[tuple[str, str], float] = {}
    for line in metrics.splitlines():
        match = RULE_OUTCOME.match(line)
        if match:
            outcomes[(match.group(1), match.group(2))] = float(match.group(3))
    assert sum(outcomes.values()) >= calls, "the server counted fewer rule evaluations than calls"
    broken = {k: v for k, v in outcomes.items() if k[1] in ("error", "timeout") and v}
    assert not broken, f"rules that failed on the real clock: {broken}"
