"""Planning: a test file checked against the loaded rule set and turned into runnable cases.

Everything that can be known without running a case is checked here and reported like rule
problems, `path:line:col: field: message [rule-id]`: the file's schema, its rule beside it, case
names, prefetch keys, scores and condition ids the rule does not have, fixture files, and the
resources a case gives, validated as FHIR R4 (`fhirdata`). A test file with errors runs no
case. (Whether the cases show the rule both firing and silent is a lint question: see
`cds_service.rules.lint`.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from cds_service.issues import RuleIssue, Severity, internal_error
from cds_service.rules.compiled import CompiledCondition, CompiledRule
from cds_service.rules.ruleset import RuleSet, rule_files
from cds_service.rules.testing.fhirdata import FhirDataChecker
from cds_service.rules.testing.fixtures import Fixtures
from cds_service.rules.testing.model import (
    TEST_SUFFIX,
    RuleTestCase,
    RuleTestFile,
    read_test_file,
    rule_test_files,
)
from cds_service.yamlsource import Located, field_path

__all__ = ["PlannedCase", "TestFilePlan", "in_fixture", "plan_test_file", "plan_tests"]

Loc = tuple[str | int, ...]
log = logging.getLogger(__name__)


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
    model: RuleTestFile | None = None  # when the file is valid
    located: Located | None = None  # its values' positions, when valid

    @property
    def errors(self) -> list[RuleIssue]:
        return [i for i in self.issues if i.severity == "error"]


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
        ruleset: RuleSet,
        rules_on_disk: set[str],
        fixtures: Fixtures,
        fhir: FhirDataChecker,
    ) -> None:
        self.path = path
        self.ruleset = ruleset
        self.rules_on_disk = rules_on_disk
        self.fixtures = fixtures
        self.fhir = fhir
        self.plan = TestFilePlan(path, path.name.removesuffix(TEST_SUFFIX))
        self.located = Located(None)
        # FHIR problems already reported: an anchor (&name) reused by ten cases, or a fixture
        # file several cases name, is one problem, reported at its first use.
        self.fhir_reported: set[tuple[object, ...]] = set()

    def issue(self, loc: Loc, message: str, severity: Severity = "error") -> None:
        line, col = self.located.position(loc)
        self.plan.issues.append(
            RuleIssue(self.path, line, col, field_path(loc), message, self.plan.rule_id, severity)
        )

    def run(self) -> TestFilePlan:
        stem = self.plan.rule_id
        model, located, issues = read_test_file(self.path, stem)
        if model is None:
            self.plan.issues = issues
            return self.plan
        self.located = self.plan.located = located
        self.plan.model = model
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
        return self.plan

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
                elif value is not None:
                    ok = self.fhir_data((*loc, "prefetch", key), value) and ok
        for key, ref in case.prefetch_files.items():
            where: Loc = (*loc, "prefetch_files", key)
            if case.prefetch is not None and key in case.prefetch:
                self.issue(where, f"prefetch key '{key}' is also given under `prefetch`")
                ok = False
                continue
            loaded = self.fixture(where, ref, nullable=True)
            if loaded is not None:
                ok = self.fhir_data(where, loaded, file=ref) and ok
            prefetch = {} if prefetch is None else prefetch
            prefetch[key] = loaded
        ok = self.context_data(loc, case, context) and ok
        if case.fhir_server is not None:
            for url, body in case.fhir_server.responses.items():
                ok = self.fhir_data((*loc, "fhir_server", "responses", url), body) and ok
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
        offered = {reason.code for reason in rule.card.overrideReasons or ()}
        for index, given in enumerate(case.feedback):
            at: Loc = (*loc, "feedback", index, "reason")
            if given.outcome == "accepted" and given.reason is not None:
                self.issue(at, "an accepted card has no override reason")
                ok = False
            elif given.reason is not None and given.reason not in offered:
                codes = ", ".join(sorted(offered)) or "none"
                self.issue(
                    at,
                    f"'{given.reason}' is not a code of rule {rule.id}'s card.overrideReasons "
                    f"(its codes: {codes})",
                )
                ok = False
        if case.fhir_server is None and case.expect.fhir_requests:
            self.issue(
                (*loc, "expect", "fhir_requests"), "requests are expected but no `fhir_server`"
            )
            ok = False
        return ok

    def context_data(self, loc: Loc, case: RuleTestCase, context: Any) -> bool:
        """The context's resources (`draftOrders`, `appointments`, ...) are FHIR. A field that
        is not a resource (an id, a list of references, a deliberately wrapped resource) is the
        hook's business, not checked here."""
        if not isinstance(context, dict):
            return True
        ok = True
        for key, value in context.items():
            if isinstance(value, dict) and "resourceType" in value:
                if case.context_file is not None:
                    where = (*loc, "context_file")
                    ok = self.fhir_data(where, value, file=case.context_file, field=key) and ok
                else:
                    ok = self.fhir_data((*loc, "context", key), value) and ok
        return ok

    def fhir_data(
        self, loc: Loc, value: Any, *, file: str | None = None, field: str | None = None
    ) -> bool:
        """Report what is wrong with `value` as FHIR R4: at the offending value when the YAML
        holds it, else at the name of the fixture `file` holding it. False when anything is."""
        problems = self.fhir.problems(value)
        for problem in problems:
            if file is None:
                at: Loc = (*loc, *problem.path)
                line, col = self.located.position(at)
                seen: tuple[object, ...] = (line, col, problem.message)
                message = problem.message
            else:
                at = loc
                inside = (*((field,) if field else ()), *problem.path)
                seen = (file, field_path(inside), problem.message)
                message = in_fixture(file, inside, problem.message)
            if seen not in self.fhir_reported:
                self.fhir_reported.add(seen)
                self.issue(at, message)
        return not problems

    def fixture(self, loc: Loc, ref: str, *, nullable: bool) -> Any:
        value, problem = self.fixtures.load(ref, nullable=nullable)
        if problem is not None:
            self.issue(loc, problem)
        return value


def in_fixture(file: str, inside: Loc, message: str) -> str:
    """A problem inside a fixture file, as it is reported at the case's reference to the file:
    `in '_fixtures/x.json' at entry[0].resource.code: <message>`."""
    where = field_path(inside)
    return f"in '{file}'" + (f" at {where}" if where else "") + f": {message}"


def plan_tests(root: Path, ruleset: RuleSet) -> list[TestFilePlan]:
    """Every test file under `root`, checked against the loaded rule set."""
    on_disk = {p.stem for p in rule_files(root)} | set(ruleset.rules)
    fixtures = Fixtures(root)
    fhir = FhirDataChecker()
    return [_plan(p, ruleset, on_disk, fixtures, fhir) for p in rule_test_files(root)]


def plan_test_file(path: Path, ruleset: RuleSet) -> TestFilePlan:
    """One test file, checked against the rule set loaded from its rules directory (fixture
    files are read from there), as `plan_tests` checks it (`rules explain --case`)."""
    root = ruleset.root
    on_disk = {p.stem for p in rule_files(root)} | set(ruleset.rules)
    return _plan(path, ruleset, on_disk, Fixtures(root), FhirDataChecker())


def _plan(
    path: Path, ruleset: RuleSet, on_disk: set[str], fixtures: Fixtures, fhir: FhirDataChecker
) -> TestFilePlan:
    """One test file's plan. An exception while checking it (a bug of ours) is that file's
    error, and it runs no case; the other files are planned."""
    rule_id = path.name.removesuffix(TEST_SUFFIX)
    try:
        return _Planner(path, ruleset, on_disk, fixtures, fhir).run()
    except Exception as exc:
        log.error("planning %s failed", path, exc_info=exc)
        issue = RuleIssue(path, 1, 1, "", internal_error(exc), rule_id)
        return TestFilePlan(path, rule_id, issues=[issue])
