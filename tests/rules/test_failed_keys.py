"""A key that failed to load is unknown, never empty, for the rules that read it.

- a declared key obtained only in part (a page could not be read) skips the rule;
- a selection without `from:` reads every key of its type: one of them failing skips the rule,
  unless every rule declaring it made it optional;
- a rule reading a score some input of which is unknown is skipped (data unavailable); a rule
  reading another score, or none, is not;
- a key the EHR did not send is answered by one it sent for the same query.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cds_service.prefetch.gaps import failed_keys, template_type
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.types import PrefetchOutcome, PrefetchSpec
from cds_service.rules.engine import RequestData, evaluate_rule
from cds_service.rules.service import optional_keys, request_data
from cds_service.wire.request import HookRequest
from tests.rules.conftest import load_rules

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
AF = {
    "resourceType": "Condition",
    "id": "af",
    "clinicalStatus": {"coding": [{"code": "active"}]},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "49436004"}]},
}
NONE: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}

SELECTS = """\
prefetch:
  conditions: Condition?patient={{context.patientId}}&category=problem-list-item
let:
  found:
    resources: Condition
when: {id: none, fhirpath: "%found.empty()"}
card: {summary: "no conditions", indicator: info, source: {label: s}}
"""
OPTIONAL = SELECTS.replace("let:", "optionalPrefetch: [conditions]\nlet:")
SCORED = """\
prefetch:
  patient: Patient/{{context.patientId}}
scores: [cha2ds2-vasc, egfr]
when: {id: high, fhirpath: "%scores.cha2ds2_vasc.value >= 2"}
card: {summary: "stroke risk", indicator: info, source: {label: s}}
"""
EGFR_ONLY = SCORED.replace('"%scores.cha2ds2_vasc.value >= 2"', '"%scores.egfr.value < 30"')


def _outcomes(**given: PrefetchOutcome) -> dict[str, PrefetchOutcome]:
    return {
        key: PrefetchOutcome(key, o.data, o.source, o.detail, o.complete)
        for key, o in given.items()
    }


def test_template_types_and_failed_keys() -> None:
    assert template_type("Condition?patient={{context.patientId}}") == "Condition"
    assert template_type("Patient/{{context.patientId}}") == "Patient"
    assert template_type("metadata") is None
    failed = failed_keys(
        {
            "a": PrefetchOutcome("a", None, "unavailable", "fetch failed: ReadTimeout"),
            "b": PrefetchOutcome("b", NONE, "fetched", "partial: page 2", complete=False),
            "c": PrefetchOutcome("c", None, "not-applicable"),  # nothing to load
            "d": PrefetchOutcome("d", None, "null"),  # known empty
            "e": PrefetchOutcome("e", NONE, "prefetch"),
        }
    )
    assert failed == {"a": "fetch failed: ReadTimeout", "b": "partial: page 2"}


def test_a_declared_key_read_in_part_skips_the_rule(tmp_path: Path) -> None:
    rule = load_rules(tmp_path, {"r": SELECTS})["r"]
    partial = PrefetchOutcome("conditions", NONE, "fetched", "partial: page 2: HTTP 500", False)
    data = request_data({"patientId": "p"}, {"conditions": partial}, NOW)
    outcome = evaluate_rule(rule, data)
    assert outcome.status == "skipped" and outcome.missing == ("conditions",)
    whole = PrefetchOutcome("conditions", NONE, "fetched")
    assert (
        evaluate_rule(rule, request_data({"patientId": "p"}, {"conditions": whole}, NOW)).status
        == "fired"
    )


def test_a_selection_over_every_key_is_unknown_when_one_of_its_type_failed(tmp_path: Path) -> None:
    rule = load_rules(tmp_path, {"r": SELECTS})["r"]
    outcomes = {
        "conditions": PrefetchOutcome("conditions", NONE, "fetched"),
        # Another rule's (or the scores') Condition key: it failed, so "no conditions" is unknown.
        "scoreConditions": PrefetchOutcome(
            "scoreConditions", None, "unavailable", "deadline exceeded"
        ),
    }
    templates = {
        "conditions": "Condition?patient={{context.patientId}}&category=problem-list-item",
        "scoreConditions": "Condition?patient={{context.patientId}}",
    }
    data = request_data({"patientId": "p"}, outcomes, NOW, templates=templates)
    outcome = evaluate_rule(rule, data)
    assert outcome.status == "skipped", outcome
    assert outcome.missing == ("scoreConditions",) and "scoreConditions" in str(outcome.reason)
    # Optional for every rule declaring it: the authors' accepted exception, evaluated as empty.
    data = request_data(
        {"patientId": "p"},
        outcomes,
        NOW,
        templates=templates,
        optional=frozenset({"scoreConditions"}),
    )
    assert evaluate_rule(rule, data).status == "fired"


def test_optional_keys_are_those_every_declaring_rule_makes_optional(tmp_path: Path) -> None:
    rules = load_rules(tmp_path, {"a": SELECTS, "b": OPTIONAL})
    assert optional_keys([rules["b"]]) == {"conditions"}
    assert optional_keys([rules["a"], rules["b"]]) == frozenset()


def _scored(unknown: bool) -> dict[str, Any]:
    cha2ds2: dict[str, Any] = {"value": 3.0, "reason": None}
    if unknown:
        why = "Conditions could not be loaded (scoreConditions: fetch failed: ReadTimeout)"
        cha2ds2 = {"value": None, "reason": f"not computable: {why}", "unknown": {"chf": why}}
    return {"cha2ds2_vasc": cha2ds2, "egfr": {"value": 25.0}}


def test_a_rule_reading_a_score_with_unknown_inputs_is_skipped(tmp_path: Path) -> None:
    rules = load_rules(tmp_path, {"stroke": SCORED, "kidney": EGFR_ONLY})
    patient = {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1950-01-01"}
    failed = {"scoreConditions": "fetch failed: ReadTimeout"}
    for unknown, stroke, kidney in ((False, "fired", "fired"), (True, "skipped", "fired")):
        data = RequestData(
            {"patientId": "p"}, {"patient": patient}, now=NOW, failed=failed if unknown else {}
        )
        data.provide_scores(_scored(unknown))
        first = evaluate_rule(rules["stroke"], data)
        assert first.status == stroke, first.reason
        # Reads only eGFR, which is known: decided as usual.
        assert evaluate_rule(rules["kidney"], data).status == kidney
    assert first.reason is not None and "cha2ds2-vasc not computable: Conditions" in first.reason
    assert first.missing == ("scoreConditions",)


def test_a_key_not_sent_is_answered_by_one_sent_for_the_same_query() -> None:
    request = HookRequest.model_validate(
        {
            "hook": "patient-view",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p"},
            "prefetch": {"conditions": {**NONE, "entry": [{"resource": AF}]}},
        }
    )
    specs = {
        "conditions": PrefetchSpec("Condition?patient={{context.patientId}}", all_pages=True),
        "scoreConditions": PrefetchSpec("Condition?patient={{context.patientId}}", all_pages=True),
        "other": PrefetchSpec("Condition?patient={{context.patientId}}&category=x", all_pages=True),
    }

    async def run() -> dict[str, PrefetchOutcome]:
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(lambda r: httpx.Response(500))
        ) as client:
            return await resolve_prefetch(request, specs, client, deadline_seconds=1, max_pages=2)

    outcomes = asyncio.run(run())
    assert outcomes["scoreConditions"].source == "prefetch"
    assert outcomes["scoreConditions"].data == outcomes["conditions"].data
    assert outcomes["other"].source == "unavailable"  # another query: not answered by it
