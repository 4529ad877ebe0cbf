"""The compiled FHIRPath gives what fhirpathpy gives, on every expression of every shipped rule,
over every fixture patient (the 18 Synthea bundles and the 55-patient Synthea export) and every
case of the pack's own rule tests (which hold what Synthea has none of: booked appointments,
INR orders).

Each patient goes through every hook the bundled pack serves, as the service evaluates it: the
hook context an EHR sends, the prefetch its discovery templates ask for answered from the
patient's record, the lazy verdict then the eager pass `rules explain` makes (every binding and
condition). Every evaluation runs both evaluators (`tests/rules/differential.py`). A `select:`'s
`where`/`sort` is only reached for resources its value set keeps, so each is also evaluated
over every resource of its types in the patient's data. Every compiled expression of the pack
must have been evaluated, and no result (nor error) may differ.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.rules_engine import context_for, last_encounter, resolve
from cds_service.config import default_rules_dir
from cds_service.fhir_double import FhirDouble
from cds_service.population.partition import partition, read_partition
from cds_service.rules.compiled import CompiledRule, leaf_conditions
from cds_service.rules.fhirpath import CompiledPath
from cds_service.rules.pipeline import ResolvedSource, display_outcomes, evaluate_call
from cds_service.rules.ruleset import RuleSet, load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import RuleStats, services_from_rules
from cds_service.rules.testing.runner import run_rule_tests
from cds_service.scores.sources import ComputedScores
from cds_service.services.definition import ServiceDefinition
from cds_service.wire.request import HookRequest
from tests.conftest import FIXTURES
from tests.rules.differential import Differential, outcome, same

SYNTHEA = FIXTURES / "fhir-r4" / "synthea"
SYNTHEA_55 = FIXTURES / "bulk-ndjson" / "synthea-55-patients"


def _paths(rule: CompiledRule) -> Iterator[CompiledPath]:
    for binding in rule.bindings:
        if binding.path is not None:
            yield binding.path
        if binding.select is not None:
            yield from (p for p in (binding.select.where, binding.select.sort) if p is not None)
    yield from (leaf.path for leaf in leaf_conditions(rule.condition) if leaf.path is not None)


def _servers(tmp: Path) -> Iterator[FhirDouble]:
    """Every fixture patient behind its own FHIR server."""
    bundles = sorted(p for p in SYNTHEA.glob("*.json") if not p.name.startswith("_"))
    assert len(bundles) >= 15, f"the Synthea fixture patients are missing under {SYNTHEA}"
    for path in bundles:
        yield FhirDouble.from_bundle(json.loads(path.read_text()), record=False)
    layout = partition(SYNTHEA_55, str(tmp), 1, compresslevel=1)
    count = 0
    for _, record in read_partition(str(tmp), 0, layout=layout):
        if not any(r.get("resourceType") == "Patient" for r in record):
            continue
        count += 1
        bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in record]}
        yield FhirDouble.from_bundle(bundle, record=False)
    assert count == 55


async def _replay(
    ruleset: RuleSet, services: list[ServiceDefinition], tmp: Path, check: Differential
) -> int:
    hooks = sorted({hook for service in services for hook in service.hooks})
    calls = 0
    for server in _servers(tmp):
        patient_id = server.resources("Patient")[0]["id"]
        encounter_id, now = last_encounter(server)
        for hook in hooks:
            body = {
                "hook": hook,
                "hookInstance": str(uuid.uuid4()),
                "fhirServer": server.base_url,
                "context": context_for(hook, patient_id, encounter_id, now),
            }
            request = HookRequest.model_validate(body)
            for service in (s for s in services if hook in s.hooks):
                source = ResolvedSource(await resolve(server, service, request, now))
                result = await evaluate_call(
                    service,
                    request,
                    source,
                    now=now,
                    budget_seconds=30.0,
                    prefetch_deadline_seconds=10.0,
                    strict=False,
                )
                assert result.trace is not None
                shown = await display_outcomes(result.trace, 30.0)
                calls += 1
                _every_candidate(result.trace.rules, result.trace.data, shown.outcomes, check)
    return calls


def _every_candidate(
    rules: list[CompiledRule], data: Any, outcomes: list[Any], check: Differential
) -> None:
    """Each `select:` filter and sort over every resource of its types in the call (the
    prefetch's and the hook context's, not only those its value set keeps), with the bindings
    the eager pass computed."""
    for rule, shown in zip(rules, outcomes, strict=True):
        variables = {**data.variables(), **shown.bindings}
        for binding in rule.bindings:
            select = binding.select
            if select is None:
                continue
            sources = [*data.context, *data.prefetch_sources()]  # the hook's resources too
            found = [r for kind in select.resources for r in data.index.resources(kind, sources)]
            for path in (select.where, select.sort):
                if path is None or not path.compiled:
                    continue
                for resource in found:
                    assert path.interpreted is not None
                    reference = outcome(path.interpreted, resource, variables)
                    mine = outcome(path._fn, resource, variables)
                    check.evaluated[path.expression] = check.evaluated.get(path.expression, 0) + 1
                    check.compiled.add(path.expression)
                    if not same(mine, reference):
                        check.differences.append((path.expression, mine, reference))


def test_compiled_fhirpath_matches_fhirpathpy_on_every_fixture_patient(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ruleset = load_ruleset(default_rules_dir(), known_score_names())
    assert not ruleset.errors
    every = {p.expression: p for rule in ruleset.rules.values() for p in _paths(rule)}
    assert len(every) > 250
    not_compiled = {e: p.not_compiled for e, p in every.items() if not p.compiled}
    assert not not_compiled, f"shipped expressions that run on fhirpathpy: {not_compiled}"

    services = services_from_rules(ruleset, scores=ComputedScores(), stats=RuleStats())
    check = Differential()
    check.install(monkeypatch)
    calls = asyncio.run(_replay(ruleset, services, tmp_path, check))
    tests = run_rule_tests(default_rules_dir())

    assert calls > 500
    assert tests.passed > 50 and tests.failed == 0
    assert not check.differences, "\n".join(
        f"{expression!r}\n  compiled:   {mine!r}\n  fhirpathpy: {reference!r}"
        for expression, mine, reference in check.differences[:5]
    )
    never = sorted(set(every) - set(check.evaluated))
    assert not never, f"shipped expressions neither a patient nor a rule test reached: {never}"
    assert sum(check.evaluated.values()) > 20_000
