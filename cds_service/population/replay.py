"""Replaying a population as patient-view calls, through the one evaluation pipeline.

Each patient's chart is opened at the record's last date (the latest encounter): every service
that serves patient-view is called, its prefetch answered from the patient's own record by the
FHIR double (so narrowing and templates apply as in production), scores computed from the call's
data, and the outcomes counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from cds_service.fhir_double import FhirDouble
from cds_service.population.report import Report
from cds_service.rules.pipeline import FhirSource, evaluate_call
from cds_service.services.definition import ServiceDefinition
from cds_service.wire.request import HookRequest

__all__ = ["REPLAY_BUDGET_SECONDS", "last_date", "replay_patient_view"]

BASE_URL = "https://population.invalid/fhir"
HOOK = "patient-view"
# A replay measures what the rules decide, not how fast: the production per-call rule budget
# (CDS_RULE_BUDGET_SECONDS, 1 s shared by a service's rules) would turn a slow moment of the
# machine into a "timeout" outcome and a failed gate. Services built for a replay get this one.
REPLAY_BUDGET_SECONDS = 30.0


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def last_date(resources: Iterable[dict[str, Any]]) -> datetime | None:
    """The start of the patient's latest encounter (when the chart was last opened)."""
    starts = (
        _instant((r.get("period") or {}).get("start"))
        for r in resources
        if r.get("resourceType") == "Encounter"
    )
    found = [s for s in starts if s is not None]
    return max(found) if found else None


async def replay_patient_view(
    services: Sequence[ServiceDefinition],
    records: dict[str, list[dict[str, Any]]],
    report: Report,
) -> Report:
    """Every patient's patient-view calls, counted into `report`."""
    chosen = [s for s in services if HOOK in s.hooks]
    for patient_id, resources in sorted(records.items()):
        at = last_date(resources)
        if at is None:
            report.no_encounter += 1
            continue
        double = FhirDouble(resources, base_url=BASE_URL, record=False)
        request = HookRequest.model_validate(
            {
                "hook": HOOK,
                "hookInstance": str(uuid.uuid4()),
                "fhirServer": BASE_URL,
                "context": {"userId": "Practitioner/population", "patientId": patient_id},
            }
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(double.handle)) as client:
            for service in chosen:
                result = await evaluate_call(
                    service,
                    request,
                    FhirSource(client, max_pages=100),
                    now=at,
                    budget_seconds=REPLAY_BUDGET_SECONDS,
                    prefetch_deadline_seconds=20.0,
                    strict=False,
                )
                report.add(service, patient_id, at, result)
    return report
