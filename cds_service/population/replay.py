"""Replaying a population through the one evaluation pipeline, at each record's last encounter.

Each patient's chart is opened (patient-view), or the visit checked in (encounter-start, with
that encounter in context), at the start of the record's latest encounter: every service that
serves the hook is called, its prefetch answered from the patient's own record by the FHIR
double (so narrowing and templates apply as in production), scores computed from the call's
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

__all__ = ["HOOKS", "REPLAY_BUDGET_SECONDS", "last_encounter", "replay"]

BASE_URL = "https://population.invalid/fhir"
#: The hooks a replay can call: the context of each is derived from the record's last encounter.
HOOKS = ("patient-view", "encounter-start")
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


def last_encounter(resources: Iterable[dict[str, Any]]) -> tuple[datetime, str] | None:
    """The start and id of the patient's latest encounter (when the chart was last opened)."""
    found = [
        (start, str(r.get("id", "")))
        for r in resources
        if r.get("resourceType") == "Encounter"
        and (start := _instant((r.get("period") or {}).get("start"))) is not None
    ]
    return max(found) if found else None


def _context(hook: str, patient_id: str, encounter_id: str) -> dict[str, str]:
    context = {"userId": "Practitioner/population", "patientId": patient_id}
    if hook == "encounter-start":
        context["encounterId"] = encounter_id
    return context


async def replay(
    services: Sequence[ServiceDefinition],
    records: dict[str, list[dict[str, Any]]],
    report: Report,
) -> Report:
    """Every patient's `report.hook` calls (one of HOOKS), counted into `report`."""
    if report.hook not in HOOKS:
        raise ValueError(f"hook {report.hook!r}: a replay calls one of {', '.join(HOOKS)}")
    chosen = [s for s in services if report.hook in s.hooks]
    for patient_id, resources in sorted(records.items()):
        last = last_encounter(resources)
        if last is None:
            report.no_encounter += 1
            continue
        at, encounter_id = last
        double = FhirDouble(resources, base_url=BASE_URL, record=False)
        request = HookRequest.model_validate(
            {
                "hook": report.hook,
                "hookInstance": str(uuid.uuid4()),
                "fhirServer": BASE_URL,
                "context": _context(report.hook, patient_id, encounter_id),
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
