"""Benchmark: the rule engine alone, for every hook of the rule pack, on every Synthea patient.

    python -m bench.rules_engine [--rules DIR] [--repeat N] [--json FILE]

For each fixture patient and each hook the pack covers, the script builds a realistic call (the
patient's own data answering the service's prefetch templates through the FHIR double,
a plausible hook context, `%now` at the patient's last encounter), then times what the engine does
per call: assembling the call's data (index, risk scores computed from the data) and evaluating
every rule of the hook. HTTP, JSON parsing and prefetch fetching are excluded; they are measured by
the service benchmark. Prints the median and p95 per hook, and each rule's card rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cds_service.config import default_rules_dir
from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.types import PrefetchOutcome
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.pipeline import (
    DataSource,
    FhirSource,
    ResolvedSource,
    RulesTrace,
    evaluate_call,
    score_record,
)
from cds_service.rules.ruleset import RuleSet, load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import RuleStats, services_from_rules
from cds_service.scores.sources import ComputedScores
from cds_service.services.definition import ServiceDefinition
from cds_service.wire.request import HookRequest
from deploy.workloads import METFORMIN, NSAID, OPIOID, draft_orders

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "fhir-r4" / "synthea"


def last_encounter(server: FhirDouble) -> tuple[str | None, datetime]:
    best: tuple[str, str | None] = ("", None)
    for encounter in server.resources("Encounter"):
        start = (encounter.get("period") or {}).get("start", "")
        if start > best[0]:
            best = (start, encounter.get("id"))
    when = datetime.fromisoformat(best[0]) if best[0] else datetime(2020, 1, 1, tzinfo=UTC)
    return best[1], when.astimezone(UTC)


def context_for(
    hook: str, patient_id: str, encounter_id: str | None, now: datetime
) -> dict[str, Any]:
    base: dict[str, Any] = {"userId": "Practitioner/bench", "patientId": patient_id}
    if hook in ("encounter-start", "encounter-discharge", "patient-view") and encounter_id:
        base["encounterId"] = encounter_id
    bundle = draft_orders(patient_id, (NSAID, OPIOID, METFORMIN))
    drafts = [entry["resource"] for entry in bundle["entry"]]
    if hook == "order-select":
        base.update(draftOrders=bundle, selections=[f"MedicationRequest/{d['id']}" for d in drafts])
    elif hook == "order-sign":
        base["draftOrders"] = bundle
    elif hook == "appointment-book":
        start = now.replace(microsecond=0).isoformat()
        base["appointments"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Appointment",
                        "id": "proposed-1",
                        "status": "proposed",
                        "start": start,
                        "end": start,
                        "participant": [
                            {
                                "actor": {"reference": f"Patient/{patient_id}"},
                                "status": "needs-action",
                            }
                        ],
                    }
                }
            ],
        }
    elif hook == "medication-refill":
        base["medications"] = bundle
    elif hook == "problem-list-item-create":  # a new atrial fibrillation on the problem list
        condition = {
            "resourceType": "Condition",
            "id": "new-af",
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
            "code": {
                "coding": [
                    {"system": SNOMED, "code": "49436004", "display": "Atrial fibrillation"}
                ],
                "text": "Atrial fibrillation",
            },
            "subject": {"reference": f"Patient/{patient_id}"},
            "recordedDate": now.isoformat(),
        }
        base["conditions"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": condition}],
        }
    elif hook == "allergyintolerance-create":  # a new penicillin allergy
        base["allergyIntolerance"] = {
            "resourceType": "AllergyIntolerance",
            "id": "new-allergy",
            "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": RXNORM, "code": "7980", "display": "Penicillin G"}]},
            "patient": {"reference": f"Patient/{patient_id}"},
        }
    return base


async def call_once(
    service: ServiceDefinition, request: HookRequest, source: DataSource, now: datetime
) -> RulesTrace:
    """One call through the evaluation pipeline (as the HTTP route and the rule tests call it)."""
    result = await evaluate_call(
        service,
        request,
        source,
        now=now,
        budget_seconds=10.0,
        prefetch_deadline_seconds=5.0,
        strict=False,
    )
    assert result.trace is not None  # rule services always trace
    return result.trace


async def resolve(
    server: FhirDouble, service: ServiceDefinition, request: HookRequest, now: datetime
) -> dict[str, PrefetchOutcome]:
    """The call's prefetch, fetched once from the patient's in-memory FHIR server."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as client:
        source = FhirSource(client, max_pages=50)
        return await source.resolve(
            request, service.prefetch_for(request.hook), deadline_seconds=10.0
        )


async def all_scores(
    rules: list[CompiledRule], trace: RulesTrace, source: ComputedScores
) -> dict[str, Any]:
    """Every score the rules declare, computed once (what the score cache would hold)."""
    names = sorted({name for rule in rules for name in rule.rule.scores})
    if not names:
        return {}
    patient = str(trace.data.context.get("patientId", ""))
    record = score_record(trace.data)
    return await source.scores(names, record, patient_id=patient, tenant="bench")


def rule_services(ruleset: RuleSet, service_id: str, scores: ComputedScores) -> ServiceDefinition:
    """The service `service_id` of the rule set, with its scores from `scores`."""
    built = services_from_rules(ruleset, scores=scores, stats=RuleStats())
    return next(s for s in built if s.id == service_id)


async def measure(args: argparse.Namespace) -> int:
    """Run the benchmark in one event loop (as the server runs calls)."""

    ruleset = load_ruleset(args.rules, known_score_names())
    if ruleset.errors:
        print("\n".join(map(str, ruleset.errors)), file=sys.stderr)
        return 2
    rules = [r for r in ruleset.rules.values() if r.rule.status != "retired"]
    hooks = sorted({r.rule.hook for r in rules})
    timings: dict[str, list[float]] = {hook: [] for hook in hooks}
    fired: dict[str, int] = {r.id: 0 for r in rules}
    patients = sorted(p for p in SYNTHEA.glob("*.json") if not p.name.startswith("_"))
    computed = ComputedScores()
    services = services_from_rules(ruleset, scores=computed, stats=RuleStats())
    for path in patients:
        server = FhirDouble.from_bundle(json.loads(path.read_text()), record=False)
        patient_id = server.resources("Patient")[0]["id"]
        encounter_id, now = last_encounter(server)
        for hook in hooks:
            context = context_for(hook, patient_id, encounter_id, now)
            request = HookRequest.model_validate(
                {
                    "hook": hook,
                    "hookInstance": str(uuid.uuid4()),
                    "fhirServer": server.base_url,
                    "context": context,
                }
            )
            calls = []
            for service in (s for s in services if hook in s.hooks):
                hook_rules = [r for r in rules if r.rule.service == service.id]
                source = ResolvedSource(await resolve(server, service, request, now))
                if not args.cold_scores:  # scores precomputed, as from the score cache
                    trace = await call_once(service, request, source, now)
                    cached = await all_scores(hook_rules, trace, computed)
                    service = rule_services(ruleset, service.id, ComputedScores(cached))
                calls.append((service, source))
            for attempt in range(args.repeat + 1):
                started = time.perf_counter()
                traces = [await call_once(s, request, src, now) for s, src in calls]
                elapsed = (time.perf_counter() - started) * 1000
                if attempt == 0:  # warm-up run: count cards once per patient
                    for trace in traces:
                        for outcome in trace.outcomes:
                            fired[outcome.rule_id] += outcome.status == "fired"
                else:
                    timings[hook].append(elapsed)

    report: dict[str, Any] = {
        "patients": len(patients),
        "repeat": args.repeat,
        "hooks": {},
        "card_rate": {},
    }
    scores = "computed in the timed region" if args.cold_scores else "precomputed (cache hit)"
    print(
        f"{len(patients)} patients, {len(rules)} rules, {args.repeat} timed runs each; "
        f"risk scores {scores}\n"
    )
    print(f"{'hook':<28}{'rules':>6}{'median ms':>11}{'p95 ms':>9}{'max ms':>9}")
    for hook in hooks:
        values = sorted(timings[hook])
        p95 = values[int(0.95 * (len(values) - 1))]
        count = sum(1 for r in rules if r.rule.hook == hook)
        median = statistics.median(values)
        print(f"{hook:<28}{count:>6}{median:>11.2f}{p95:>9.2f}{values[-1]:>9.2f}")
        report["hooks"][hook] = {
            "rules": count,
            "median_ms": round(median, 3),
            "p95_ms": round(p95, 3),
            "max_ms": round(values[-1], 3),
        }
    print(f"\n{'rule':<44}{'hook':<22}{'cards':>6}{'rate':>7}")
    for rule in sorted(rules, key=lambda r: (r.rule.hook, r.id)):
        rate = fired[rule.id] / len(patients)
        print(f"{rule.id:<44}{rule.rule.hook:<22}{fired[rule.id]:>6}{rate:>7.0%}")
        report["card_rate"][rule.id] = {"cards": fired[rule.id], "rate": round(rate, 3)}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=Path, default=default_rules_dir())
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--cold-scores",
        action="store_true",
        help="compute risk scores from the data inside the timed region (default: scores come "
        "precomputed, as from the score cache)",
    )
    return asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
