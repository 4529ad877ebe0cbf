"""Observation prefetch narrowed to the codes the rules select, and only when that is safe."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from cds_service.config import default_rules_dir
from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.types import PrefetchSpec
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.narrowing import MAX_CODES, narrowed_templates
from cds_service.rules.pipeline import validate_context
from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import evaluate_hook_rules, prefetch_specs
from cds_service.scores.provider import SCORE_OBSERVATION_SETS, SCORE_PREFETCH
from cds_service.scores.sources import ComputedScores
from cds_service.services.definition import HookCall
from cds_service.terminology import value_set as value_set_of
from cds_service.wire.request import HookRequest
from tests.conftest import FIXTURES
from tests.rules.conftest import load_rules, value_set

LOINC = "http://loinc.org"
LABS = "Observation?patient={{context.patientId}}&category=laboratory"

RULE = """\
prefetch:
  labs: {labs}
  conditions: Condition?patient={{{{context.patientId}}}}
let:
{let}
when: {{id: any, fhirpath: "{when}"}}
card:
  summary: s
  indicator: info
  source: {{label: s}}
"""

HBA1C = "  picked:\n    resources: Observation\n    from: [labs]\n    coded: hba1c"
LDL = "  ldl:\n    resources: Observation\n    from: [labs]\n    coded: ldl"


def _rules(tmp_path: Path, *specs: tuple[str, str, str], labs: str = LABS) -> list[CompiledRule]:
    many = [f"{n}-0" for n in range(MAX_CODES + 1)]
    value_sets = {
        "hba1c": value_set("hba1c", "4548-4", "17856-6"),
        "ldl": value_set("ldl", "18262-6"),
        "many": value_set("many", *many),
        "filtered": value_set("filtered", "4548-4")
        + "compose:\n  include:\n    - system: http://hl7.org/fhir/sid/icd-10-cm\n"
        "      filter: [{property: concept, op: is-a, value: E11}]\n",
    }
    texts = {rule_id: RULE.format(labs=labs, let=let, when=when) for rule_id, let, when in specs}
    return list(load_rules(tmp_path, texts, value_sets).values())


def _labs(rules: list[CompiledRule]) -> str:
    return prefetch_specs(rules)["labs"].template


def _codes_of(template: str) -> set[str]:
    query = dict(parse_qsl(template.partition("?")[2]))
    return set(query.get("code", "").split(",")) - {""}


def test_coded_selection_narrows_its_key_and_keeps_the_other_parameters(tmp_path: Path) -> None:
    rules = _rules(tmp_path, ("a", HBA1C, "%picked.exists()"))
    template = _labs(rules)
    assert template.startswith(LABS + "&code=")
    assert _codes_of(template) == {f"{LOINC}|4548-4", f"{LOINC}|17856-6"}
    # Keys nothing selects by code, and non-Observation searches, are left as written.
    assert prefetch_specs(rules)["conditions"].template == "Condition?patient={{context.patientId}}"


def test_codes_are_the_union_over_the_rules_that_share_the_key(tmp_path: Path) -> None:
    rules = _rules(tmp_path, ("a", HBA1C, "%picked.exists()"), ("b", LDL, "%ldl.exists()"))
    assert _codes_of(_labs(rules)) == {f"{LOINC}|4548-4", f"{LOINC}|17856-6", f"{LOINC}|18262-6"}


@pytest.mark.parametrize(
    ("let", "when"),
    [
        # a FHIRPath expression reads the whole key
        (HBA1C, "%picked.exists() and %labs.entry.count() > 3"),
        ('  n: "%labs.entry.count()"', "%n > 0"),
        # a selection without `coded:` reads every code
        ("  picked:\n    resources: Observation\n    from: [labs]", "%picked.exists()"),
        # a selection over every key without `coded:`
        ("  picked:\n    resources: Observation", "%picked.exists()"),
        # a selection filter naming the key
        (HBA1C + '\n    where: "%labs.entry.exists()"', "%picked.exists()"),
    ],
    ids=["condition", "binding", "uncoded", "uncoded-all-keys", "where"],
)
def test_any_other_use_leaves_the_key_as_written(tmp_path: Path, let: str, when: str) -> None:
    rules = _rules(tmp_path, ("a", HBA1C, "%picked.exists()"), ("b", let, when))
    assert _labs(rules) == LABS


def test_coded_selection_over_every_key_narrows_them(tmp_path: Path) -> None:
    let = "  picked:\n    resources: Observation\n    coded: ldl"
    assert _codes_of(_labs(_rules(tmp_path, ("a", let, "%picked.exists()")))) == {
        f"{LOINC}|18262-6"
    }


@pytest.mark.parametrize(
    "labs",
    [
        "Observation?patient={{context.patientId}}&code=http://loinc.org|4548-4",
        "Observation?patient={{context.patientId}}&_id=1,2",
        "Observation/{{context.patientId}}",
    ],
)
def test_searches_already_filtered_and_reads_are_left_alone(tmp_path: Path, labs: str) -> None:
    assert _labs(_rules(tmp_path, ("a", HBA1C, "%picked.exists()"), labs=labs)) == labs


def test_a_value_set_too_large_for_a_url_is_not_spelled_out(tmp_path: Path) -> None:
    let = "  picked:\n    resources: Observation\n    from: [labs]\n    coded: many"
    assert _labs(_rules(tmp_path, ("a", let, "%picked.exists()"))) == LABS


def test_a_value_set_with_an_is_a_filter_is_not_spelled_out(tmp_path: Path) -> None:
    let = "  picked:\n    resources: Observation\n    from: [labs]\n    coded: filtered"
    assert _labs(_rules(tmp_path, ("a", let, "%picked.exists()"))) == LABS


def test_score_prefetch_asks_for_the_codes_of_the_scores_observation_value_sets() -> None:
    read = {
        f"{system}|{code}"
        for set_id in SCORE_OBSERVATION_SETS
        for system, code in value_set_of(set_id).codes
    }
    template = SCORE_PREFETCH["scoreObservations"]
    assert _codes_of(template) == read
    assert narrowed_templates({"scoreObservations": template}, []) == {
        "scoreObservations": template
    }


# --- the bundled pack: narrowed prefetch gives every rule the same outcome -------------------


def _fixture_patients() -> list[Path]:
    folder = FIXTURES / "fhir-r4" / "synthea"
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("_"))


def _outcomes(
    server: FhirDouble,
    hook_rules: list[CompiledRule],
    specs: Mapping[str, PrefetchSpec],
    context: dict[str, Any],
    hook: str,
) -> tuple[list[tuple[str, str, str | None]], int]:
    request = HookRequest.model_validate(
        {
            "hook": hook,
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": server.base_url,
            "context": context,
        }
    )

    async def fetch() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as client:
            return await resolve_prefetch(
                request, dict(specs), client, deadline_seconds=30, max_pages=100
            )

    prefetch = asyncio.run(fetch())
    size = sum(len(json.dumps(o.data)) for o in prefetch.values() if o.available)
    now = max(
        (e.get("period", {}).get("start", "") for e in server.resources("Encounter")), default=""
    )
    call = HookCall(request, validate_context(request), prefetch, datetime.fromisoformat(now))
    trace = asyncio.run(evaluate_hook_rules(hook_rules, call, ComputedScores(), budget_seconds=30))
    outcomes = trace.outcomes
    return [
        (o.rule_id, o.status, o.card.summary if o.card is not None else None) for o in outcomes
    ], size


def _last_encounter(server: FhirDouble) -> str:
    latest = max(server.resources("Encounter"), key=lambda e: e.get("period", {}).get("start", ""))
    return str(latest["id"])


# (hook, cards the bundled rules give the fixture patients at least: the comparison covers cards)
NARROWED_HOOKS = [("patient-view", 3), ("encounter-start", 10)]


@pytest.mark.parametrize(("hook", "least_fired"), NARROWED_HOOKS)
def test_bundled_rules_decide_the_same_on_narrowed_prefetch(hook: str, least_fired: int) -> None:
    """Every Synthea patient: the cards of the bundled rules of the hook (and the scores they
    read) are the same with the templates as written and as narrowed, on much less data."""
    ruleset = load_ruleset(default_rules_dir(), known_score_names())
    hook_rules = [r for r in ruleset.rules.values() if r.rule.hook == hook]
    narrowed = prefetch_specs(hook_rules)
    written = {
        key: PrefetchSpec(
            {k: t for r in hook_rules for k, t in r.rule.prefetch.items()}.get(key, spec.template)
            if key != "scoreObservations"
            else "Observation?patient={{context.patientId}}",
            all_pages=True,
        )
        for key, spec in narrowed.items()
    }
    assert written != narrowed
    total = {"written": 0, "narrowed": 0}
    fired = 0
    for path in _fixture_patients():
        server = FhirDouble.from_bundle(json.loads(path.read_text()))
        context = {"userId": "Practitioner/1", "patientId": server.resources("Patient")[0]["id"]}
        if hook == "encounter-start":
            context["encounterId"] = _last_encounter(server)
        before, size_before = _outcomes(server, hook_rules, written, context, hook)
        after, size_after = _outcomes(server, hook_rules, narrowed, context, hook)
        assert after == before, path.name
        total["written"] += size_before
        total["narrowed"] += size_after
        fired += sum(status == "fired" for _, status, _ in after)
    assert fired >= least_fired  # the comparison covers cards, not only silence
    assert total["narrowed"] < total["written"] / 2, total
