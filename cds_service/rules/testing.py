"""Rule tests: `<rule-id>.test.yaml` beside each rule, and the runner behind `rules test`.

A test file (`schema: cds-rule-test/1`) holds cases. Each case is one hook call: the context, the
prefetch the client sends (an absent key is not sent; `null` means "the query found nothing"),
injected risk scores, and optionally a mock FHIR server that answers the queries for prefetch the
client did not send. The runner builds a real `HookRequest`, resolves prefetch exactly as the
service does (`resolve_prefetch`), evaluates the rule with `evaluate_rule` under the case's frozen
`now`, and compares:

- `expect.cards`: exact count; each expected card is a subset of the card's wire JSON (nested
  objects compared key by key, lists position by position with the same length). No cards, or no
  `cards:` at all, means the rule must NOT fire;
- `expect.conditions`: the truth of named conditions;
- `expect.fhir_requests`: the exact (order-insensitive) relative URLs fetched from the mock server;
- `expect.status`: the outcome status. Without it, a rule that was `skipped` (data unavailable),
  raised (`error`) or ran long (`timeout`) fails the case: a test must not pass vacuously.

Problems in test files are reported like rule problems, `path:line:col: field: message [rule-id]`;
the pytest plugin and the CLI share everything here.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote

import httpx
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
)

from cds_service.exceptions import CDSServiceError
from cds_service.fhir_double import FhirDouble
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.rules.compiled import CompiledCondition, CompiledRule
from cds_service.rules.engine import evaluate_rule
from cds_service.rules.issues import RuleIssue, Severity, author_message
from cds_service.rules.model import Kebab
from cds_service.rules.ruleset import RuleSet, load_ruleset, rule_files
from cds_service.rules.runtime import default_score_source, known_score_names
from cds_service.rules.service import ScoreSource, prefetch_specs, request_data
from cds_service.rules.yamlsource import Located, field_path, read_yaml
from cds_service.wire.contexts import hook_spec
from cds_service.wire.request import HookRequest

__all__ = [
    "FIXTURES_DIR",
    "MOCK_FHIR_BASE",
    "CaseResult",
    "Expectation",
    "LintReport",
    "MockFhirServer",
    "PlannedCase",
    "RuleTestCase",
    "RuleTestFile",
    "TestFilePlan",
    "TestReport",
    "known_scores",
    "lint_rules",
    "plan_tests",
    "rule_test_files",
    "run_case",
    "run_rule_tests",
    "score_source",
]

TEST_SUFFIX = ".test.yaml"
FIXTURES_DIR = "_fixtures"
MOCK_FHIR_BASE = "https://fhir.test.invalid/r4"
PREFETCH_DEADLINE_SECONDS = 2.0
RULE_BUDGET_SECONDS = 5.0
MAX_PAGES = 20
Status = Literal["fired", "silent", "skipped", "error", "timeout"]


# --- risk scores ---------------------------------------------------------------------------------


def known_scores() -> list[str]:
    """Score names rules may declare."""
    return known_score_names()


def score_source() -> ScoreSource:
    """Scores computed from a case's FHIR resources (cases may inject them instead)."""
    return default_score_source


# --- the test file format ------------------------------------------------------------------------


class _Authored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Text = Annotated[StrictStr, Field(min_length=1)]
JsonObject = dict[str, Any]


class MockFhirServer(_Authored):
    """A FHIR server answering the queries for prefetch the client did not send."""

    responses: dict[str, JsonObject] = Field(
        default_factory=dict,
        description=(
            "Relative URL (with query, e.g. `MedicationRequest?patient=p1&status=active`) → the "
            "resource or Bundle returned. Any other URL answers 400 with an OperationOutcome "
            "(cds_service/fhir_double.py), never an empty result."
        ),
    )


class Expectation(_Authored):
    """What the case expects. Nothing expected means the rule must not fire."""

    cards: list[JsonObject] = Field(
        default_factory=list,
        description=(
            "Exact number of cards; each listed key must equal the card's wire JSON (nested "
            "objects by key, lists by position). [] or absent: the rule must NOT fire."
        ),
    )
    conditions: dict[str, StrictBool] = Field(
        default_factory=dict, description="Condition id → expected truth"
    )
    fhir_requests: list[Text] | None = Field(
        default=None,
        description="Exactly these relative URLs were fetched from the mock FHIR server, any order",
    )
    status: Status | None = Field(
        default=None,
        description=("Expected outcome. Without it, skipped/error/timeout outcomes fail the case."),
    )


class RuleTestCase(_Authored):
    """One hook call and what it should produce."""

    name: Text = Field(description="Unique in the file; `--run` matches `<rule-id>/<name>`")
    rule: Kebab | None = Field(default=None, description="Rule to test (default: the file's rule)")
    now: AwareDatetime | None = Field(default=None, description="Overrides the file's `now`")
    context: JsonObject | None = Field(
        default=None, description="The hook context (the hook comes from the rule)"
    )
    context_file: Text | None = Field(
        default=None,
        description="Instead of `context`: a JSON file under rules/_fixtures/, relative to the "
        "rules directory (e.g. `_fixtures/order-select-context.json`)",
    )
    prefetch: dict[str, JsonObject | None] | None = Field(
        default=None,
        description="Prefetch the client sends; an absent key is not sent, null = found nothing",
    )
    prefetch_files: dict[str, Text] = Field(
        default_factory=dict,
        description="Prefetch key → JSON file under rules/_fixtures/ (relative to the rules "
        "directory), merged with `prefetch`",
    )
    scores: dict[str, JsonObject] = Field(
        default_factory=dict,
        description="Injected risk scores by name (e.g. `cha2ds2-vasc: {value: 4}`)",
    )
    fhir_server: MockFhirServer | None = None
    expect: Expectation = Field(default_factory=Expectation)


class RuleTestFile(_Authored):
    """`<rule-id>.test.yaml`: the tests of one rule, beside it."""

    schema_: Literal["cds-rule-test/1"] = Field(alias="schema")
    rule: Kebab | None = Field(
        default=None, description="The rule under test; must equal the file name's stem"
    )
    now: AwareDatetime = Field(description="The frozen %now of every case (a case may override)")
    description: Text | None = None
    fixtures: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form: a place for YAML anchors (&name) that cases reuse (*name)",
    )
    cases: Annotated[list[RuleTestCase], Field(min_length=1)]


# --- planning: a test file checked and turned into runnable cases --------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class PlannedCase:
    """One case, checked and ready to run."""

    path: Path
    line: int
    case: RuleTestCase
    rule_id: str
    now: datetime
    context: dict[str, Any]
    prefetch: dict[str, Any] | None

    @property
    def key(self) -> str:
        """What `--run REGEX` matches: `<rule-id>/<case name>`."""
        return f"{self.rule_id}/{self.case.name}"


@dataclass(slots=True)
class TestFilePlan:
    """A test file: its runnable cases, or the problems that keep it from running."""

    __test__: ClassVar[bool] = False

    path: Path
    rule_id: str
    cases: list[PlannedCase] = field(default_factory=list)
    issues: list[RuleIssue] = field(default_factory=list)

    @property
    def errors(self) -> list[RuleIssue]:
        return [i for i in self.issues if i.severity == "error"]


def rule_test_files(root: Path) -> list[Path]:
    """Every `*.test.yaml` under `root`, outside `_`- and `.`-prefixed directories."""
    return sorted(
        p
        for p in root.rglob("*" + TEST_SUFFIX)
        if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )


def _jsonable(value: Any) -> Any:
    """YAML dates/timestamps as the ISO strings FHIR and CDS Hooks JSON carry."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _validation_issues(
    exc: ValidationError, path: Path, located: Located, rule_id: str
) -> list[RuleIssue]:
    issues = []
    for err in exc.errors(include_input=False, include_url=False):
        loc: Loc = tuple(p for p in err["loc"] if isinstance(p, int | str))
        line, col = located.position(loc)
        issues.append(RuleIssue(path, line, col, field_path(loc), author_message(err), rule_id))
    return issues


def _condition_ids(condition: CompiledCondition) -> Iterator[str]:
    if condition.kind == "leaf" and condition.id is not None:
        yield condition.id
    for member in condition.members:
        yield from _condition_ids(member)


class _Planner:
    """Checks one test file against the rule set; collects located issues."""

    def __init__(
        self,
        path: Path,
        root: Path,
        ruleset: RuleSet,
        rules_on_disk: set[str],
        fixtures: dict[Path, Any],
    ) -> None:
        self.path = path
        self.root = root
        self.ruleset = ruleset
        self.rules_on_disk = rules_on_disk
        self.fixtures = fixtures
        self.plan = TestFilePlan(path, path.name.removesuffix(TEST_SUFFIX))
        self.located = Located(None)

    def issue(self, loc: Loc, message: str, severity: Severity = "error") -> None:
        line, col = self.located.position(loc)
        self.plan.issues.append(
            RuleIssue(self.path, line, col, field_path(loc), message, self.plan.rule_id, severity)
        )

    def run(self) -> TestFilePlan:
        stem = self.plan.rule_id
        located, errors = read_yaml(self.path)
        if located is None:
            self.plan.issues = [
                RuleIssue(self.path, e.line, e.col, e.field, e.message, stem) for e in errors
            ]
            return self.plan
        self.located = located
        if located.value is None:
            self.issue((), "the test file is empty")
            return self.plan
        try:
            model = RuleTestFile.model_validate(_jsonable(located.value))
        except ValidationError as exc:
            self.plan.issues = _validation_issues(exc, self.path, located, stem)
            return self.plan
        beside = self.path.with_name(stem + ".yaml")
        if not beside.is_file():
            self.issue(
                (),
                f"no rule file '{beside.name}' beside this test file "
                "(a test file is named after its rule: <rule-id>.test.yaml)",
            )
        elif model.rule is not None and model.rule != stem:
            self.issue(("rule",), f"must equal the file name's rule id '{stem}'")
        names: set[str] = set()
        for index, case in enumerate(model.cases):
            if case.name in names:
                self.issue(("cases", index, "name"), f"case name '{case.name}' is used twice")
            names.add(case.name)
            planned = self.case(index, case, model)
            if planned is not None:
                self.plan.cases.append(planned)
        if not self.plan.errors:
            self.coverage(model)
        return self.plan

    def coverage(self, model: RuleTestFile) -> None:
        firing = any(c.expect.cards for c in model.cases)
        silent = any(
            not c.expect.cards and c.expect.status in (None, "silent") for c in model.cases
        )
        if not firing:
            self.issue(
                ("cases",), "no case expects a card: add one where the rule fires", "warning"
            )
        if not silent:
            self.issue(
                ("cases",),
                "no case expects silence: add one where the rule must not fire",
                "warning",
            )

    def case(self, index: int, case: RuleTestCase, model: RuleTestFile) -> PlannedCase | None:
        loc: Loc = ("cases", index)
        rule_id = case.rule or self.plan.rule_id
        if case.rule is not None and case.rule not in self.rules_on_disk:
            self.issue((*loc, "rule"), f"unknown rule '{case.rule}'")
            return None
        ok = True
        if (case.context is None) == (case.context_file is None):
            self.issue(loc, "give exactly one of `context` and `context_file`")
            ok = False
        context = case.context
        if case.context_file is not None:
            context = self.fixture((*loc, "context_file"), case.context_file, nullable=False)
        prefetch: dict[str, Any] | None = None
        if case.prefetch is not None:
            prefetch = dict(case.prefetch)
            for key, value in case.prefetch.items():
                if value is not None and not isinstance(value.get("resourceType"), str):
                    self.issue(
                        (*loc, "prefetch", key),
                        "must be a FHIR resource (an object with `resourceType`) or null",
                    )
                    ok = False
        for key, ref in case.prefetch_files.items():
            where: Loc = (*loc, "prefetch_files", key)
            if case.prefetch is not None and key in case.prefetch:
                self.issue(where, f"prefetch key '{key}' is also given under `prefetch`")
                ok = False
                continue
            loaded = self.fixture(where, ref, nullable=True)
            prefetch = {} if prefetch is None else prefetch
            prefetch[key] = loaded
        compiled = self.ruleset.rules.get(rule_id)
        if compiled is not None:
            ok = self.against_rule(loc, case, compiled, prefetch) and ok
        if not ok or context is None or any(i.severity == "error" for i in self.plan.issues):
            return None
        line = self.located.position(loc)[0]
        now = case.now or model.now
        return PlannedCase(self.path, line, case, rule_id, now, context, prefetch)

    def against_rule(
        self,
        loc: Loc,
        case: RuleTestCase,
        compiled: CompiledRule,
        prefetch: dict[str, Any] | None,
    ) -> bool:
        ok = True
        rule = compiled.rule
        for key in prefetch or {}:
            if key not in rule.prefetch:
                where = "prefetch_files" if key in case.prefetch_files else "prefetch"
                known = ", ".join(sorted(rule.prefetch)) or "none"
                self.issue(
                    (*loc, where, key),
                    f"'{key}' is not a prefetch key of rule {rule.id} (its keys: {known})",
                )
                ok = False
        for name in case.scores:
            if name not in rule.scores:
                declared = ", ".join(rule.scores) or "none"
                self.issue(
                    (*loc, "scores", name),
                    f"rule {rule.id} does not declare score '{name}' (declared: {declared})",
                )
                ok = False
        ids = set(_condition_ids(compiled.condition))
        for condition in case.expect.conditions:
            if condition not in ids:
                self.issue(
                    (*loc, "expect", "conditions", condition),
                    f"rule {rule.id} has no condition '{condition}' "
                    f"(its conditions: {', '.join(sorted(ids))})",
                )
                ok = False
        if case.fhir_server is None and case.expect.fhir_requests:
            self.issue(
                (*loc, "expect", "fhir_requests"), "requests are expected but no `fhir_server`"
            )
            ok = False
        return ok

    def fixture(self, loc: Loc, ref: str, *, nullable: bool) -> Any:
        base = (self.root / FIXTURES_DIR).resolve()
        target = (self.root / ref).resolve()
        if not target.is_relative_to(base):
            self.issue(
                loc,
                f"'{ref}' is not under {FIXTURES_DIR}/ (paths are relative to the "
                "rules directory, e.g. _fixtures/bundle.json)",
            )
            return None
        if target not in self.fixtures:
            try:
                self.fixtures[target] = json.loads(target.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self.issue(loc, f"fixture file '{ref}' does not exist")
                return None
            except (OSError, UnicodeDecodeError) as exc:
                self.issue(loc, f"cannot read fixture file '{ref}': {type(exc).__name__}")
                return None
            except json.JSONDecodeError as exc:
                self.issue(
                    loc,
                    f"fixture file '{ref}' is not valid JSON: {exc.msg} "
                    f"(line {exc.lineno}, column {exc.colno})",
                )
                return None
        value = self.fixtures[target]
        if value is None and nullable:
            return None
        if not isinstance(value, dict) or (nullable and "resourceType" not in value):
            kind = "a FHIR resource or null" if nullable else "a JSON object"
            self.issue(loc, f"fixture file '{ref}' must hold {kind}")
            return None
        return value


def plan_tests(root: Path, ruleset: RuleSet) -> list[TestFilePlan]:
    """Every test file under `root`, checked against the loaded rule set."""
    on_disk = {p.stem for p in rule_files(root)} | set(ruleset.rules)
    fixtures: dict[Path, Any] = {}
    return [_Planner(p, root, ruleset, on_disk, fixtures).run() for p in rule_test_files(root)]


# --- running a case ------------------------------------------------------------------------------


class RuleTestFailure(AssertionError):
    """Raised by the pytest plugin for a failing case; the message says everything."""


@dataclass(slots=True)
class CaseResult:
    """What happened to one case."""

    path: Path
    line: int
    rule_id: str
    name: str
    failures: list[str] = field(default_factory=list)
    status: str | None = None
    reason: str | None = None
    expected_cards: list[dict[str, Any]] = field(default_factory=list)
    actual_cards: list[dict[str, Any]] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def key(self) -> str:
        return f"{self.rule_id}/{self.name}"

    def message(self, *, diff: bool = False) -> str:
        """Where the case is, and every mismatch (with the card diff when asked)."""
        lines = [f"{self.path}:{self.line}: case '{self.name}' of rule {self.rule_id}"]
        lines += [f"  {failure}" for failure in self.failures]
        if diff:
            text = self.diff()
            if text:
                lines += ["", text]
        return "\n".join(lines)

    def diff(self) -> str:
        """Unified diff of the expected cards against the actual ones (keys the expectation
        does not mention are left out of the actual side; extra cards are shown whole)."""
        actual = [{k: v for k, v in card.items() if k != "uuid"} for card in self.actual_cards]
        shown = [_project(e, a) for e, a in zip(self.expected_cards, actual, strict=False)]
        shown += actual[len(self.expected_cards) :]
        if shown == self.expected_cards:
            return ""
        return "\n".join(
            difflib.unified_diff(
                _pretty(self.expected_cards).splitlines(),
                _pretty(shown).splitlines(),
                "expected cards",
                "actual cards (keys not expected left out)",
                lineterm="",
            )
        )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _show(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _project(expected: Any, actual: Any) -> Any:
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _project(expected[k], actual[k]) for k in expected if k in actual}
    if isinstance(expected, list) and isinstance(actual, list):
        paired = [_project(e, a) for e, a in zip(expected, actual, strict=False)]
        return paired + actual[len(expected) :]
    return actual


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    return type(expected) is type(actual) and bool(expected == actual)


def subset_mismatches(expected: Any, actual: Any, where: str) -> list[str]:
    """Where `actual` does not contain `expected` (objects by key, lists by position)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {_show(actual)}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: expected {_show(value)}, got nothing (absent)")
            else:
                out += subset_mismatches(value, actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {_show(actual)}"]
        if len(expected) != len(actual):
            return [f"{where}: expected {len(expected)} items, got {len(actual)}: {_show(actual)}"]
        out = []
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += subset_mismatches(e, a, f"{where}[{index}]")
        return out
    if _same(expected, actual):
        return []
    return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]


def _normal(url: str) -> str:
    return unquote(url).lstrip("/")


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
    responses = case.fhir_server.responses if case.fhir_server else {}
    server = FhirDouble(responses=responses, base_url=MOCK_FHIR_BASE)
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


# --- whole runs ----------------------------------------------------------------------------------


def _sorted(issues: list[RuleIssue]) -> list[RuleIssue]:
    return sorted(issues, key=lambda i: (str(i.path), i.line, i.col, i.field, i.message))


@dataclass(slots=True)
class TestReport:
    """The result of `rules test`: load problems and one result per case run."""

    __test__: ClassVar[bool] = False

    root: Path
    ruleset: RuleSet
    plans: list[TestFilePlan]
    results: list[CaseResult]

    @property
    def issues(self) -> list[RuleIssue]:
        return _sorted([*self.ruleset.issues, *(i for p in self.plans for i in p.issues)])

    @property
    def errors(self) -> list[RuleIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def broken_files(self) -> list[Path]:
        """Files (rules, value sets, tests) whose errors keep them from loading or running."""
        return sorted({i.path for i in self.errors}, key=str)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        """Failing cases, plus one per broken file (as the pytest plugin counts them)."""
        return sum(1 for r in self.results if not r.ok) + len(self.broken_files)

    @property
    def ok(self) -> bool:
        return self.failed == 0


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


@dataclass(slots=True)
class LintReport:
    """The result of `rules lint`: every problem of every rule, value set and test file."""

    ruleset: RuleSet
    issues: list[RuleIssue]
    rule_count: int

    @property
    def errors(self) -> list[RuleIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[RuleIssue]:
        return [i for i in self.issues if i.severity == "warning"]


def lint_rules(root: Path) -> LintReport:
    """Check everything under `root` without running tests."""
    ruleset = load_ruleset(root, known_scores())
    plans = plan_tests(root, ruleset)
    issues = [*ruleset.issues, *(i for p in plans for i in p.issues)]
    for compiled in ruleset.rules.values():
        tests = compiled.path.with_name(compiled.id + TEST_SUFFIX)
        if compiled.rule.status != "retired" and not tests.exists():
            issues.append(
                RuleIssue(
                    compiled.path,
                    1,
                    1,
                    "",
                    f"no test file '{tests.name}' beside this rule",
                    compiled.id,
                    "warning",
                )
            )
    return LintReport(ruleset, _sorted(issues), len(rule_files(root)) if root.is_dir() else 0)
