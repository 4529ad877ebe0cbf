"""`cds-service rules explain ID --request FILE | --case FILE[:NAME]`: why a rule fired, or not.

Evaluates one rule on a CDS Hooks request body (hook, context, prefetch) exactly as the service
would, without fetching anything: prefetch keys the request does not carry are reported as
unavailable (and a rule that needs them is skipped, as it would be when the FHIR server cannot be
reached). Prints the prefetch, scores, each binding's value, each condition's truth as a tree, the
outcome and the card. A rule with a `suppress:` block is checked against the overrides given
with `--override CODE@WHEN` (earlier overrides of its cards for the patient), as the service
checks it against its feedback table.
It also lists the medication references the call's data cannot resolve (their drug
is unknown, so no value set has them).

With `--case FILE[:NAME]` the request is a rule test case's, built as `rules test` builds it
(`testing.runner.request_body`: context, prefetch and fixture files, the scores' keys answered
from the case's record), at the case's `now`, with its `feedback:` as the overrides, its injected
`scores:`, and its `fhir_server.responses` answering what the request lacks (the FHIR server
double `rules test` uses).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from cds_service.clock import system_clock
from cds_service.exceptions import CDSServiceError, RequestError
from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.types import PrefetchOutcome
from cds_service.rules.compiled import CompiledCondition, CompiledRule, score_variable
from cds_service.rules.engine import RuleOutcome
from cds_service.rules.pipeline import (
    DataSource,
    Display,
    FhirSource,
    OfflineSource,
    RulesTrace,
    display_outcomes,
    evaluate_call,
)
from cds_service.rules.ruleset import RuleSet, load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import rule_service
from cds_service.rules.snooze import given_overrides
from cds_service.rules.testing.model import TEST_SUFFIX, rule_test_files
from cds_service.rules.testing.plan import PlannedCase, plan_test_file
from cds_service.rules.testing.runner import (
    MAX_PAGES,
    MOCK_FHIR_BASE,
    case_overrides,
    request_body,
)
from cds_service.scores.sources import ComputedScores
from cds_service.services.suppression import RecordedOverrides
from cds_service.terminology.medications import MEDICATION_TYPES
from cds_service.validation import field_errors
from cds_service.wire.request import HookRequest

__all__ = [
    "CaseError",
    "ExplainError",
    "ExplainRun",
    "explain",
    "explain_case",
    "parse_case",
    "parse_now",
    "parse_override",
    "run_rule",
    "trace_json",
]

VALUE_WIDTH = 120
BUDGET_SECONDS = 5.0


class ExplainError(Exception):
    """A problem that stops the explanation (unknown rule, bad request, wrong hook)."""


class CaseError(ExplainError):
    """`--case` names no runnable case of the rule: an unknown or broken test file, an unknown
    or ambiguous case name, a case of another rule (`rules explain` exits 2)."""


@dataclass(frozen=True, slots=True)
class ExplainRun:
    """One rule evaluated on one request: the verdict and everything shown beside it."""

    rule: CompiledRule
    request: HookRequest
    now: datetime
    prefetch: Mapping[str, PrefetchOutcome]
    scores: Mapping[str, Any]
    outcome: RuleOutcome  # the verdict: lazy, as in production
    shown: RuleOutcome  # every binding and condition, evaluated eagerly for display
    overrides: RecordedOverrides  # given with --override
    unresolved: Mapping[str, str]  # `Type/id` → a medicationReference nothing resolves
    fetching: bool = False  # a source fetched what the request lacks (`--case`'s FHIR server)


def parse_now(text: str) -> datetime:
    """An ISO 8601 instant (`Z` allowed); a time without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ExplainError(f"--now: '{text}' is not an ISO 8601 date-time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_override(text: str) -> tuple[str, datetime]:
    """`CODE@WHEN` (an override reason code and an ISO 8601 instant) as (code, when)."""
    code, sep, when = text.rpartition("@")
    if not sep or not code.strip():
        raise ExplainError(
            f"--override: '{text}' is not CODE@WHEN (e.g. patient-declined@2026-06-01)"
        )
    try:
        return code.strip(), parse_now(when)
    except ExplainError:
        raise ExplainError(f"--override: '{when}' is not an ISO 8601 date-time") from None


def _errors(exc: ValidationError) -> str:
    return "\n".join(f"  {error}" for error in field_errors(exc))


def _load_rule(root: Path, rule_id: str) -> tuple[CompiledRule, RuleSet]:
    ruleset = load_ruleset(root, known_score_names())
    rule = ruleset.rules.get(rule_id)
    if rule is not None:
        return rule, ruleset
    own = [i for i in ruleset.issues if i.rule_id == rule_id or i.path.stem == rule_id]
    if own:
        listed = "\n".join(f"  {i}" for i in own)
        raise ExplainError(f"rule '{rule_id}' did not load:\n{listed}")
    known = ", ".join(sorted(ruleset.rules)) or "none"
    raise ExplainError(f"unknown rule '{rule_id}' in {root} (loaded rules: {known})")


def _read_request(path: Path) -> HookRequest:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExplainError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExplainError(f"{path}: cannot read ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise ExplainError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    try:
        return HookRequest.model_validate(body)
    except ValidationError as exc:
        raise ExplainError(f"{path}: not a valid CDS Hooks request:\n{_errors(exc)}") from None


def _evaluate(
    root: Path,
    rule_id: str,
    request_path: Path,
    now: datetime | None,
    overrides: Sequence[tuple[str, datetime]],
) -> ExplainRun:
    rule, ruleset = _load_rule(root, rule_id)
    try:
        given = given_overrides(rule, overrides)
    except ValueError as exc:
        raise ExplainError(f"--override: {exc}") from None
    request = _read_request(request_path)
    return asyncio.run(run_rule(rule, ruleset, request, now or system_clock(), overrides=given))


async def run_rule(
    rule: CompiledRule,
    ruleset: RuleSet,
    request: HookRequest,
    now: datetime,
    *,
    source: DataSource | None = None,
    overrides: RecordedOverrides | None = None,
    scores: Mapping[str, Any] | None = None,
) -> ExplainRun:
    """One rule on one request, as the service evaluates it, with everything shown.

    `source` fetches what the request's prefetch lacks (default: nothing is fetched, those keys
    are unavailable); `scores` are injected score results by name (a test case's `scores:`).
    Raises ExplainError for a request of another hook or an invalid context."""
    if request.hook != rule.rule.hook:
        raise ExplainError(
            f"the request is a '{request.hook}' call but rule {rule.id} runs on '{rule.rule.hook}'"
        )
    given = overrides if overrides is not None else given_overrides(rule, ())
    try:
        trace, prefetch, shown = await _through_pipeline(
            rule, ruleset, request, now, given, source or OfflineSource(), scores
        )
    except RequestError as exc:
        listed = "\n".join(
            f"  {i.field}: {i.message}" if i.field else f"  {i.message}" for i in exc.issues
        )
        raise ExplainError(f"the context is invalid for {request.hook}:\n{listed}") from None
    except CDSServiceError as exc:
        raise ExplainError(f"prefetch: {exc.message}") from None
    except Exception as exc:
        raise ExplainError(f"computing scores failed: {type(exc).__name__}: {exc}") from None
    index = trace.data.index
    for resource in index.all_resources():
        if resource.get("resourceType") in MEDICATION_TYPES:
            index.drug(resource)
    return ExplainRun(
        rule,
        request,
        now,
        prefetch,
        shown.scores,
        trace.outcomes[0],
        shown.outcomes[0],
        given,
        dict(index.unresolved),
        fetching=source is not None,
    )


async def _through_pipeline(
    rule: CompiledRule,
    ruleset: RuleSet,
    request: HookRequest,
    now: datetime,
    overrides: RecordedOverrides,
    source: DataSource,
    scores: Mapping[str, Any] | None = None,
) -> tuple[RulesTrace, dict[str, PrefetchOutcome], Display]:
    """The production verdict (lazy, through the pipeline, nothing fetched: keys the request
    lacks are unavailable; snoozed by the given overrides), and an eager pass over the same data
    for display."""
    service = rule_service(
        rule, ruleset, scores=ComputedScores(scores), budget_seconds=BUDGET_SECONDS
    )
    called = await evaluate_call(
        service,
        request,
        source,
        now=now,
        budget_seconds=BUDGET_SECONDS + 2.0,
        prefetch_deadline_seconds=2.0,
        strict=False,
        suppression=overrides,
    )
    trace = called.trace
    assert trace is not None  # a rule service always traces
    shown = await display_outcomes(trace, BUDGET_SECONDS)
    return trace, called.prefetch, shown


def _one_line(value: Any, width: int = VALUE_WIDTH) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _describe(outcome: PrefetchOutcome, sent: bool, fetching: bool = False) -> str:
    if outcome.source == "unavailable" and not sent and not fetching:
        return "unavailable: not in the request (explain does not fetch from the FHIR server)"
    if outcome.source == "not-applicable":
        return "not applicable: the template's context fields are absent"
    if outcome.source == "null":
        return "null (the query found nothing)"
    data = outcome.data
    what = outcome.source
    if isinstance(data, dict):
        kind = str(data.get("resourceType"))
        if kind == "Bundle":
            entries = data.get("entry")
            count = len(entries) if isinstance(entries, list) else 0
            kind = f"Bundle, {count} entr{'y' if count == 1 else 'ies'}"
        what = f"{what} ({kind})"
    if outcome.detail:
        what += f": {outcome.detail}"
    return what


def _truth(value: bool | None) -> str:
    return "not evaluated" if value is None else json.dumps(value)


def _tree(
    condition: CompiledCondition, truth: Mapping[str, bool], depth: int, lines: list[str]
) -> bool | None:
    pad = "  " * depth
    if condition.kind == "leaf":
        value = truth.get(condition.id or "")
        expression = condition.path.expression if condition.path else ""
        lines.append(f"{pad}{condition.id}: {_truth(value)}    {expression}")
        return value
    at = len(lines)
    lines.append("")
    values = [_tree(m, truth, depth + 1, lines) for m in condition.members]
    result = _combined(condition.kind, values)
    lines[at] = f"{pad}{condition.kind}: {_truth(result)}"
    return result


def _combined(kind: str, values: list[bool | None]) -> bool | None:
    """The truth of `all`, `any` or `not` over its members' (None: not evaluated)."""
    if kind == "all":
        return False if False in values else (None if None in values else True)
    if kind == "any":
        return True if True in values else (None if None in values else False)
    return None if values[0] is None else not values[0]


def _format(run: ExplainRun) -> str:
    rule, outcome = run.rule, run.outcome
    stamp = run.now.isoformat().replace("+00:00", "Z")
    lines = [
        f"rule {rule.id} v{rule.rule.version} ({rule.rule.status}): {rule.rule.title}",
        f"hook {rule.rule.hook}, service {rule.rule.service}, now {stamp}",
        "",
        "prefetch:",
    ]
    sent = run.request.prefetch or {}
    lines += [
        f"  {key}: {_describe(o, key in sent, run.fetching)}" for key, o in run.prefetch.items()
    ]
    if not run.prefetch:
        lines.append("  (none)")
    if rule.rule.scores:
        lines.append("scores:")
        lines += [f"  {name} = {_one_line(value)}" for name, value in run.scores.items()]
        missing = [n for n in rule.rule.scores if score_variable(n) not in run.scores]
        lines += [f"  {name}: not available" for name in missing]
    shown = run.shown
    lines.append("bindings:  (* = computed for display only: the service never needs it here)")
    for binding in rule.bindings:
        if binding.name in outcome.bindings:
            lines.append(f"  {binding.name} = {_one_line(outcome.bindings[binding.name])}")
        elif binding.name in shown.bindings:
            lines.append(f"* {binding.name} = {_one_line(shown.bindings[binding.name])}")
        else:
            lines.append(f"  {binding.name}: not evaluated")
    if not rule.bindings:
        lines.append("  (none)")
    if run.unresolved:
        lines.append("medication references not resolved (drug unknown: in no value set):")
        lines += [f"  {ref}: {target}" for ref, target in sorted(run.unresolved.items())]
    lines.append("conditions:")
    _tree(rule.condition, {**shown.conditions, **outcome.conditions}, 1, lines)
    policy = rule.suppress
    if policy is not None:
        codes = ", ".join(sorted(code for _, code in policy.reasons))
        unit = policy.unit + ("s" if policy.amount != 1 else "")
        given = ", ".join(
            f"{o.code} at {o.at.isoformat().replace('+00:00', 'Z')}" for o in run.overrides.recorded
        )
        lines.append(f"suppress: {codes} for {policy.amount} {unit}")
        lines.append(f"  overrides given: {given or 'none (--override CODE@WHEN)'}")
    reason = f" ({outcome.reason})" if outcome.reason else ""
    lines.append(f"status: {outcome.status}{reason}")
    if outcome.status == "error" and outcome.location is not None:
        lines.append(f"  raised by {outcome.failed_at} at {outcome.location}:")
        lines.append(f"    {outcome.expression}")
        lines.append(f"  {outcome.detail}")
    if shown.status != outcome.status and shown.status in ("error", "timeout"):
        lines.append(
            f"  (evaluating every binding for display: {shown.status}: {shown.reason}; "
            "the service never computes it on this call)"
        )
    if outcome.card is None:
        lines.append("card: none")
    else:
        card = json.dumps(outcome.card.wire(), indent=2, ensure_ascii=False)
        lines.append(f"card:\n{card}")
    return "\n".join(lines) + "\n"


def explain(
    root: Path,
    rule_id: str,
    request_path: Path,
    *,
    now: datetime | None = None,
    overrides: Sequence[tuple[str, datetime]] = (),
) -> str:
    """The explanation as text; raises ExplainError when it cannot be produced. `overrides` are
    earlier overrides of the rule's cards for the patient: (reason code, when)."""
    return _format(_evaluate(root, rule_id, request_path, now, overrides))


def parse_case(text: str) -> tuple[Path, str | None]:
    """`FILE[:NAME]` as (FILE, NAME or None): FILE ends with `.test.yaml`; NAME is what follows
    its `:` (a case name may hold colons)."""
    at = text.find(TEST_SUFFIX + ":")
    if at < 0:
        return Path(text), None
    end = at + len(TEST_SUFFIX)
    return Path(text[:end]), text[end + 1 :] or None


def _listed(names: Sequence[str]) -> str:
    return "\n".join(f"  {name}" for name in names)


def _pick(path: Path, cases: Sequence[PlannedCase], name: str | None) -> PlannedCase:
    """The case named `name` (exact, else a unique case-insensitive part of a name), or the
    file's only case when no name is given."""
    names = [c.case.name for c in cases]
    if name is None:
        if len(cases) == 1:
            return cases[0]
        raise CaseError(
            f"{path} has {len(cases)} cases: name one (--case FILE:NAME):\n{_listed(names)}"
        )
    exact = [c for c in cases if c.case.name == name]
    if exact:
        return exact[0]
    found = [c for c in cases if name.casefold() in c.case.name.casefold()]
    if len(found) == 1:
        return found[0]
    if found:
        matching = [c.case.name for c in found]
        raise CaseError(
            f"{path}: '{name}' matches {len(found)} cases: give more of one name:\n"
            f"{_listed(matching)}"
        )
    raise CaseError(f"{path}: no case '{name}'; its cases:\n{_listed(names)}")


def _case_of(root: Path, rule_id: str, path: Path, name: str | None) -> PlannedCase:
    """The planned case `--case` names, checked as `rules test` checks it."""
    if not path.name.endswith(TEST_SUFFIX):
        raise CaseError(f"{path}: not a rule test file (*{TEST_SUFFIX})")
    if not path.is_file():
        there = [str(p) for p in rule_test_files(root)] if root.is_dir() else []
        listed = f"; the test files under {root}:\n{_listed(there)}" if there else ""
        raise CaseError(f"{path}: no such test file{listed}")
    ruleset = load_ruleset(root, known_score_names())
    plan = plan_test_file(path, ruleset)
    if plan.errors:
        raise CaseError(
            f"{path} has errors (see `cds-service rules lint`):\n"
            + "\n".join(f"  {issue}" for issue in plan.errors)
        )
    planned = _pick(path, plan.cases, name)
    if planned.rule_id != rule_id:
        raise CaseError(
            f"{path}: case '{planned.case.name}' tests rule {planned.rule_id}, not {rule_id} "
            f"(explain {planned.rule_id}, or give a case of {rule_id})"
        )
    return planned


async def _run_case(
    rule: CompiledRule,
    ruleset: RuleSet,
    planned: PlannedCase,
    request: HookRequest,
    now: datetime,
    overrides: RecordedOverrides,
) -> ExplainRun:
    """The case's call as `rules test` makes it: its `fhir_server` (the FHIR server double, with
    no answers when the case has none) behind the request's `fhirServer`."""
    server = planned.case.fhir_server
    double = FhirDouble(responses=server.responses if server else {}, base_url=MOCK_FHIR_BASE)
    async with httpx.AsyncClient(transport=httpx.MockTransport(double.handle)) as client:
        return await run_rule(
            rule,
            ruleset,
            request,
            now,
            source=FhirSource(client, MAX_PAGES) if server is not None else None,
            overrides=overrides,
            scores=planned.case.scores,
        )


def explain_case(
    root: Path,
    rule_id: str,
    case: str,
    *,
    now: datetime | None = None,
    overrides: Sequence[tuple[str, datetime]] = (),
) -> str:
    """The explanation of a test case's call (`case` is `FILE[:NAME]`): its request as `rules
    test` sends it, at the case's `now` (or `now`), with the case's feedback (and `overrides`).
    Raises CaseError when `case` names no case of the rule, ExplainError otherwise."""
    path, name = parse_case(case)
    planned = _case_of(root, rule_id, path, name)
    rule, ruleset = _load_rule(root, rule_id)
    try:
        extra = given_overrides(rule, overrides).recorded
    except ValueError as exc:
        raise ExplainError(f"--override: {exc}") from None
    try:
        request = HookRequest.model_validate(request_body(rule, planned))
    except ValidationError as exc:
        raise ExplainError(f"{path}: the case's request is invalid:\n{_errors(exc)}") from None
    given = RecordedOverrides(case_overrides(rule, planned).recorded + extra)
    at = now or planned.now
    return _format(asyncio.run(_run_case(rule, ruleset, planned, request, at, given)))


def _condition_json(condition: CompiledCondition, truth: Mapping[str, bool]) -> dict[str, Any]:
    if condition.kind == "leaf":
        return {
            "id": condition.id,
            "kind": "leaf",
            "value": truth.get(condition.id or ""),
            "expression": condition.path.expression if condition.path else "",
        }
    members = [_condition_json(m, truth) for m in condition.members]
    result = _combined(condition.kind, [m["value"] for m in members])
    return {"kind": condition.kind, "value": result, "members": members}


def trace_json(run: ExplainRun) -> dict[str, Any]:
    """What `rules explain` prints, as JSON (the workbench's playground shows it)."""
    rule, outcome, shown = run.rule, run.outcome, run.shown
    sent = run.request.prefetch or {}
    bindings = []
    for binding in rule.bindings:
        if binding.name in outcome.bindings:
            value, computed = outcome.bindings[binding.name], "evaluated"
        elif binding.name in shown.bindings:
            value, computed = shown.bindings[binding.name], "display-only"
        else:
            value, computed = None, "not-evaluated"
        shown_value = _one_line(value, 400) if computed != "not-evaluated" else None
        bindings.append({"name": binding.name, "value": shown_value, "computed": computed})
    error = None
    if outcome.status == "error":
        error = {
            "at": outcome.failed_at,
            "location": outcome.location,
            "expression": outcome.expression,
            "detail": outcome.detail,
        }
    return {
        "rule": rule.id,
        "version": rule.rule.version,
        "hook": rule.rule.hook,
        "service": rule.rule.service,
        "now": run.now.isoformat().replace("+00:00", "Z"),
        "prefetch": [
            {"key": key, "outcome": _describe(o, key in sent, run.fetching)}
            for key, o in run.prefetch.items()
        ],
        "scores": {name: _one_line(value, 400) for name, value in run.scores.items()},
        "bindings": bindings,
        "conditions": _condition_json(rule.condition, {**shown.conditions, **outcome.conditions}),
        "unresolved": dict(sorted(run.unresolved.items())),
        "status": outcome.status,
        "reason": outcome.reason,
        "error": error,
        "card": outcome.card.wire() if outcome.card is not None else None,
    }
