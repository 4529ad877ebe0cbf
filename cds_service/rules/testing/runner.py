"""Running rule test cases as the service would run the call, and whole test runs.

The runner builds a real `HookRequest`, resolves prefetch exactly as the service does
(`resolve_prefetch`, with a mock FHIR server for what the client did not send), evaluates the rule
with `evaluate_rule` under the case's frozen `now`, and compares:

- `expect.cards`: exact count; each expected card is a subset of the card's wire JSON (see
  `matching`). No cards, or no `cards:` at all, means the rule must NOT fire;
- `expect.conditions`: the truth of named conditions;
- `expect.fhir_requests`: the exact (order-insensitive) relative URLs fetched from the mock server;
- `expect.status`: the outcome status. Without it, a rule that was `skipped` (data unavailable),
  raised (`error`) or ran long (`timeout`) fails the case: a test must not pass vacuously.

The pytest plugin and the CLI share everything here.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from pydantic import ValidationError

from cds_service.exceptions import CDSServiceError
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.engine import evaluate_rule
from cds_service.rules.ruleset import RuleSet, load_ruleset
from cds_service.rules.runtime import default_score_source, known_score_names
from cds_service.rules.service import ScoreSource, prefetch_specs, request_data
from cds_service.rules.testing.matching import show as _show
from cds_service.rules.testing.matching import subset_mismatches
from cds_service.rules.testing.model import Expectation
from cds_service.rules.testing.plan import PlannedCase, plan_tests
from cds_service.rules.testing.report import CaseResult, TestReport
from cds_service.rules.yamlsource import field_path
from cds_service.wire.contexts import hook_spec
from cds_service.wire.request import HookRequest

__all__ = [
    "MOCK_FHIR_BASE",
    "known_scores",
    "run_case",
    "run_rule_tests",
    "score_source",
]

MOCK_FHIR_BASE = "https://fhir.test.invalid/r4"
PREFETCH_DEADLINE_SECONDS = 2.0
RULE_BUDGET_SECONDS = 5.0
MAX_PAGES = 20


def known_scores() -> list[str]:
    """Score names rules may declare."""
    return known_score_names()


def score_source() -> ScoreSource:
    """Scores computed from a case's FHIR resources (cases may inject them instead)."""
    return default_score_source


def _relative(url: httpx.URL) -> str:
    path = unquote(url.raw_path.decode("ascii"))
    base = httpx.URL(MOCK_FHIR_BASE).path.rstrip("/") + "/"
    return path.removeprefix(base)


def _normal(url: str) -> str:
    return unquote(url).lstrip("/")


class _MockServer:
    def __init__(self, responses: Mapping[str, dict[str, Any]]) -> None:
        self.responses = {_normal(k): v for k, v in responses.items()}
        self.requested: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        relative = _relative(request.url)
        self.requested.append(relative)
        body = self.responses.get(relative)
        if body is None:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "not-found"}],
            }
            return httpx.Response(404, json=outcome)
        return httpx.Response(200, json=body)


async def _resolve(
    request: HookRequest, rule: CompiledRule, transport: httpx.MockTransport
) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=transport) as client:
        return await resolve_prefetch(
            request,
            prefetch_specs([rule]),
            client,
            deadline_seconds=PREFETCH_DEADLINE_SECONDS,
            max_pages=MAX_PAGES,
        )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_input=False, include_url=False)[0]
    where = field_path(tuple(p for p in err["loc"] if isinstance(p, int | str)))
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def _truths(conditions: Mapping[str, bool]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in conditions.items()) or "none evaluated"


def run_case(
    planned: PlannedCase, ruleset: RuleSet, scores_from: ScoreSource | None = None
) -> CaseResult:
    """Run one case as the service would run the call, and compare with its expectation."""
    case = planned.case
    result = CaseResult(planned.path, planned.line, planned.rule_id, case.name)
    result.expected_cards = list(case.expect.cards)
    rule = ruleset.rules.get(planned.rule_id)
    if rule is None:
        result.failures.append(
            f"rule {planned.rule_id} did not load: run `cds-service rules lint` and fix it"
        )
        return result
    spec = hook_spec(rule.rule.hook)
    assert spec is not None  # a compiled rule has a known hook
    try:
        spec.context.model_validate(planned.context)
    except ValidationError as exc:
        result.failures.append(f"context is invalid for hook {rule.rule.hook}: {_first_error(exc)}")
        return result
    server = _MockServer(case.fhir_server.responses if case.fhir_server else {})
    body: dict[str, Any] = {
        "hook": rule.rule.hook,
        "hookInstance": str(uuid.uuid4()),
        "context": planned.context,
    }
    if planned.prefetch is not None:
        body["prefetch"] = planned.prefetch
    if case.fhir_server is not None:
        body["fhirServer"] = MOCK_FHIR_BASE
    try:
        request = HookRequest.model_validate(body)
        outcomes = asyncio.run(_resolve(request, rule, httpx.MockTransport(server.handle)))
    except ValidationError as exc:
        result.failures.append(f"the hook request is invalid: {_first_error(exc)}")
        return result
    except CDSServiceError as exc:
        result.failures.append(f"the call failed ({exc.status_code}): {exc.message}")
        return result
    result.requested = list(server.requested)
    try:
        data = request_data(
            request.context,
            outcomes,
            [rule],
            planned.now,
            scores_from,
            injected_scores=case.scores,
        )
    except Exception as exc:  # a score source that fails is a failed case, not a crash
        result.failures.append(f"computing the rule's scores failed: {type(exc).__name__}: {exc}")
        return result
    outcome = evaluate_rule(rule, data, budget_seconds=RULE_BUDGET_SECONDS, eager=True)
    result.status = outcome.status
    result.reason = outcome.reason
    result.actual_cards = [outcome.card.wire()] if outcome.card is not None else []
    _compare(result, case.expect, outcome.conditions)
    return result


def _compare(result: CaseResult, expect: Expectation, conditions: Mapping[str, bool]) -> None:
    status = result.status or "?"
    why = f"{status}: {result.reason}" if result.reason else status
    if expect.status is not None and expect.status != status:
        result.failures.append(f"status: expected {expect.status}, got {why}")
    elif expect.status is None and status in ("skipped", "error", "timeout"):
        result.failures.append(
            f"status: the rule was {why} (expect `status: {status}` if that is intended)"
        )
    expected, actual = result.expected_cards, result.actual_cards
    if len(expected) != len(actual):
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
    scores_from = score_source()
    results = [
        run_case(case, ruleset, scores_from)
        for plan in plans
        if not plan.errors
        for case in plan.cases
        if regex is None or regex.search(case.key)
    ]
    return TestReport(root, ruleset, plans, results)
