"""Running rule test cases as the service would run the call, and whole test runs.

The runner builds a real `HookRequest` and sends it through the evaluation pipeline the HTTP
route uses (`rules/pipeline.evaluate_call`: prefetch resolved with a mock FHIR server for what
the client did not send, scores computed from the call's resources unless the case injects them,
the rule evaluated lazily) under the case's frozen `now`, and compares:

- `expect.cards`: exact count; each expected card is a subset of the card's wire JSON (see
  `matching`). No cards, or no `cards:` at all, means the rule must NOT fire;
- `expect.conditions`: the truth of named conditions;
- `expect.fhir_requests`: the exact (order-insensitive) relative URLs fetched from the mock server;
- `expect.status`: the outcome status. Without it, a rule that was `skipped` (data unavailable),
  raised (`error`) or ran long (`timeout`) fails the case: a test must not pass vacuously. A
  draft rule that fires is `shadow`, as the service counts and audits it (its card is never
  returned); with `status: shadow`, `expect.cards` may list the card it would show, or nothing.

A case's `feedback:` is the suppression source of its call (overrides the clinician gave earlier
on the rule's cards for the patient), as the feedback table is when serving.

The pytest plugin and the CLI share everything here.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from pydantic import ValidationError

from cds_service.exceptions import CDSServiceError
from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.gaps import template_type
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.engine import RuleOutcome, now_stamp
from cds_service.rules.pipeline import FhirSource, RulesTrace, display_outcomes, evaluate_call
from cds_service.rules.ruleset import RuleSet, load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import counted_status, rule_service
from cds_service.rules.snooze import given_overrides
from cds_service.rules.testing.matching import show as _show
from cds_service.rules.testing.matching import subset_mismatches, without_uuids
from cds_service.rules.testing.model import Expectation
from cds_service.rules.testing.plan import PlannedCase, plan_tests
from cds_service.rules.testing.report import CaseResult, TestReport
from cds_service.scores.provider import SCORE_PREFETCH
from cds_service.scores.sources import ComputedScores
from cds_service.services.suppression import RecordedOverrides
from cds_service.validation import field_errors
from cds_service.wire.fhir import bundle_resources
from cds_service.wire.request import HookRequest

__all__ = [
    "MOCK_FHIR_BASE",
    "case_overrides",
    "known_scores",
    "run_case",
    "run_rule_tests",
]

MOCK_FHIR_BASE = "https://fhir.test.invalid/r4"
PREFETCH_DEADLINE_SECONDS = 2.0
RULE_BUDGET_SECONDS = 5.0
MAX_PAGES = 20
# UTC offsets (minutes) a case is also run in: the Americas, India, Nepal, Chatham, the date line.
CLOCK_OFFSETS_MINUTES = (-300, -210, 60, 330, 345, 765, 840)


def known_scores() -> list[str]:
    """Score names rules may declare."""
    return known_score_names()


def _normal(url: str) -> str:
    return unquote(url).lstrip("/")


def _first_error(exc: ValidationError) -> str:
    return str(field_errors(exc)[0])


def _truths(conditions: Mapping[str, bool]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in conditions.items()) or "none evaluated"


def run_case(planned: PlannedCase, ruleset: RuleSet) -> CaseResult:
    """Run one case through the evaluation pipeline, as the service runs a call, and compare
    with its expectation. The verdict (status, card) is the lazy, production one; the truth of
    conditions production did not need to evaluate comes from an eager pass for display."""
    case = planned.case
    result = CaseResult(planned.path, planned.line, planned.rule_id, case.name)
    result.expected_cards = list(case.expect.cards)
    rule = ruleset.rules.get(planned.rule_id)
    if rule is None:
        result.failures.append(
            f"rule {planned.rule_id} did not load: run `cds-service rules lint` and fix it"
        )
        return result
    body = request_body(rule, planned)
    responses = case.fhir_server.responses if case.fhir_server else {}
    server = FhirDouble(responses=responses, base_url=MOCK_FHIR_BASE)
    try:
        request = HookRequest.model_validate(body)
    except ValidationError as exc:
        result.failures.append(f"the hook request is invalid: {_first_error(exc)}")
        return result
    try:
        trace, conditions = asyncio.run(_evaluate(rule, ruleset, request, planned, server))
        # The same call on a clock as the server's is: the same instant plus a fraction of a
        # second, in another UTC offset. A rule's outcome must not depend on either.
        shifted = _server_clock(planned)
        again = FhirDouble(responses=responses, base_url=MOCK_FHIR_BASE)
        other, _ = asyncio.run(_evaluate(rule, ruleset, request, planned, again, shifted))
    except CDSServiceError as exc:
        first = exc.issues[0] if exc.issues else None
        if first is not None and first.field and first.field.startswith("context"):
            result.failures.append(
                f"context is invalid for hook {rule.rule.hook}: {first.field}: {first.message}"
            )
        else:
            result.failures.append(f"the call failed ({exc.status_code}): {exc.message}")
        return result
    except Exception as exc:  # a score source that fails is a failed case, not a crash
        result.failures.append(f"evaluating the case failed: {type(exc).__name__}: {exc}")
        return result
    result.requested = list(server.requested)
    outcome = trace.outcomes[0]
    # A draft rule that fired is `shadow`, as the service counts and audits it.
    result.status = counted_status(outcome, rule.rule.status == "draft")
    result.reason = outcome.reason
    if outcome.status == "error" and outcome.expression is not None:
        result.reason = f"{outcome.reason}: `{outcome.expression}`: {outcome.detail}"
    result.actual_cards = [outcome.card.wire()] if outcome.card is not None else []
    _compare(result, case.expect, conditions)
    _compare_clocks(result, planned.now, outcome, shifted, other.outcomes[0])
    return result


def request_body(rule: CompiledRule, planned: PlannedCase) -> dict[str, Any]:
    """The CDS Hooks request a case sends: its context and prefetch (with the scores' keys
    answered from the case's record, `score_prefetch`), and the mock FHIR server when the case
    has one."""
    body: dict[str, Any] = {
        "hook": rule.rule.hook,
        "hookInstance": str(uuid.uuid4()),
        "context": planned.context,
    }
    if planned.prefetch is not None:
        body["prefetch"] = planned.prefetch
        if rule.rule.scores and planned.case.fhir_server is None:
            body["prefetch"] = {**score_prefetch(planned.prefetch), **planned.prefetch}
    if planned.case.fhir_server is not None:
        body["fhirServer"] = MOCK_FHIR_BASE
    return body


def score_prefetch(prefetch: Mapping[str, Any]) -> dict[str, Any]:
    """The scores' own prefetch keys answered from the resources a case gives: a case's
    prefetch is the patient's whole record, so what the scores read is what it holds (a case
    that tests a failed load gives a `fhir_server` whose answer fails)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for value in prefetch.values():
        if not isinstance(value, dict):
            continue
        bundle = value.get("resourceType") == "Bundle"
        for item in bundle_resources(value) if bundle else [value]:
            if isinstance(item.get("resourceType"), str):
                found.setdefault(item["resourceType"], []).append(item)
    out: dict[str, Any] = {}
    for key, template in SCORE_PREFETCH.items():
        resource_type = template_type(template)
        resources = found.get(resource_type or "", [])
        if resource_type == "Patient":
            out[key] = resources[0] if resources else None
        else:
            entry = [{"resource": r} for r in resources]
            out[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entry}
    return out


def _server_clock(planned: PlannedCase) -> datetime:
    """The case's `now` plus a sub-second offset (1 µs to 0.999999 s), in a non-UTC offset;
    drawn from the case's key, so a failure reproduces."""
    draw = random.Random(planned.key)
    offset = timedelta(minutes=draw.choice(CLOCK_OFFSETS_MINUTES))
    later = planned.now + timedelta(microseconds=draw.randint(1, 999_999))
    return later.astimezone(timezone(offset))


def _compare_clocks(
    result: CaseResult,
    now: datetime,
    outcome: RuleOutcome,
    shifted: datetime,
    other: RuleOutcome,
) -> None:
    # A card may show the clock itself (`%now.toString()`): each run's own `now` is masked.
    cards = [
        json.dumps(without_uuids(card.wire()), sort_keys=True).replace(now_stamp(at), "<now>")
        for card, at in ((outcome.card, now), (other.card, shifted))
        if card is not None
    ]
    same_cards = len(cards) != 1 and (not cards or cards[0] == cards[1])
    if outcome.status == other.status and same_cards:
        return
    why = f"{other.status}: {other.reason}" if other.reason else other.status
    result.failures.append(
        f"clock: at {shifted.isoformat()} (the case's now plus a fraction of a second, in another "
        f"UTC offset, as a server's clock reads) the rule is {why}"
        + ("" if outcome.status != other.status else ", with another card")
        + f"; at {now.isoformat()} it is {outcome.status}. Date arithmetic must not depend on "
        "the clock's precision or offset"
    )


async def _evaluate(
    rule: CompiledRule,
    ruleset: RuleSet,
    request: HookRequest,
    planned: PlannedCase,
    server: FhirDouble,
    now: datetime | None = None,
) -> tuple[RulesTrace, dict[str, bool]]:
    """The case's call through the pipeline (at the case's `now` unless given another), and the
    truth of every condition (the lazy verdict's where it has one, the eager display pass's
    otherwise)."""
    service = rule_service(
        rule,
        ruleset,
        scores=ComputedScores(planned.case.scores),
        budget_seconds=RULE_BUDGET_SECONDS,
    )
    transport = httpx.MockTransport(server.handle)
    async with httpx.AsyncClient(transport=transport) as client:
        called = await evaluate_call(
            service,
            request,
            FhirSource(client, MAX_PAGES),
            now=planned.now if now is None else now,
            budget_seconds=RULE_BUDGET_SECONDS + PREFETCH_DEADLINE_SECONDS,
            prefetch_deadline_seconds=PREFETCH_DEADLINE_SECONDS,
            strict=False,
            suppression=case_overrides(rule, planned),
        )
    trace = called.trace
    assert trace is not None  # a rule service always traces
    shown = await display_outcomes(trace, RULE_BUDGET_SECONDS)
    return trace, {**shown.outcomes[0].conditions, **trace.outcomes[0].conditions}


def case_overrides(rule: CompiledRule, planned: PlannedCase) -> RecordedOverrides:
    """The case's earlier overrides with a coded reason (checked when planned), as the feedback
    store would give them."""
    return given_overrides(
        rule,
        (
            (given.reason, given.at)
            for given in planned.case.feedback
            if given.outcome == "overridden" and given.reason is not None
        ),
    )


def _compare(result: CaseResult, expect: Expectation, conditions: Mapping[str, bool]) -> None:
    status = result.status or "?"
    why = f"{status}: {result.reason}" if result.reason else status
    if status in ("error", "timeout"):  # never intended: a rule must not fail on any case
        result.failures.append(f"status: the rule failed ({why}); fix the rule")
    elif expect.status == "fired" and status == "shadow":
        result.failures.append(
            f"status: expected fired, got shadow: rule {result.rule_id} is a draft (status: "
            "draft), so its card is never returned: expect `status: shadow`"
        )
    elif expect.status == "shadow" and status == "fired":
        result.failures.append(
            "status: expected shadow, got fired (only a `status: draft` rule's outcome is shadow)"
        )
    elif expect.status is not None and expect.status != status:
        result.failures.append(f"status: expected {expect.status}, got {why}")
    elif expect.status is None and status == "skipped":
        result.failures.append(
            f"status: the rule was {why} (expect `status: {status}` if that is intended)"
        )
    expected, actual = result.expected_cards, result.actual_cards
    if expect.status == "shadow" and status == "shadow" and not expected:
        pass  # the card a draft would show need not be listed: it is never returned
    elif len(expected) != len(actual):
        if not expected:
            summary = actual[0].get("summary")
            result.failures.append(
                f"cards: expected no card (must not fire), got {len(actual)}: {_show(summary)}"
            )
        else:
            result.failures.append(
                f"cards: expected {len(expected)} card{'s' if len(expected) != 1 else ''}, "
                f"got {len(actual)} (status {why}; conditions: {_truths(conditions)})"
            )
    else:
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            result.failures += subset_mismatches(e, a, f"cards[{index}]")
    for name, want in expect.conditions.items():
        got = conditions.get(name)
        if got is None:
            result.failures.append(
                f"conditions.{name}: expected {json.dumps(want)}, but it was not evaluated "
                f"(status {why})"
            )
        elif got != want:
            result.failures.append(
                f"conditions.{name}: expected {json.dumps(want)}, got {json.dumps(got)}"
            )
    if expect.fhir_requests is not None:
        wanted = Counter(_normal(u) for u in expect.fhir_requests)
        made = Counter(result.requested)
        if wanted != made:
            missing = sorted((wanted - made).elements())
            extra = sorted((made - wanted).elements())
            parts = []
            if missing:
                parts.append(f"not requested: {_show(missing)}")
            if extra:
                parts.append(f"unexpected: {_show(extra)}")
            result.failures.append(
                f"fhir_requests: expected {_show(sorted(wanted.elements()))}, got "
                f"{_show(sorted(made.elements()))} ({'; '.join(parts)})"
            )


def run_rule_tests(root: Path, *, pattern: str | None = None) -> TestReport:
    """Load the rules under `root`, then run every case of every `*.test.yaml`.

    `pattern` (a regular expression, searched) keeps the cases whose `<rule-id>/<case name>`
    matches. Problems in rules or test files make the run fail; a broken test file runs no case.
    """
    regex = re.compile(pattern) if pattern else None
    ruleset = load_ruleset(root, known_scores())
    plans = plan_tests(root, ruleset)
    results = [
        run_case(case, ruleset)
        for plan in plans
        if not plan.errors
        for case in plan.cases
        if regex is None or regex.search(case.key)
    ]
    return TestReport(root, ruleset, plans, results)
