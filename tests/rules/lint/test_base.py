"""The Validator base class: ids, issues located in rule and test files, finalize()."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.issues import RuleIssue
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.lint import Validator, lint_rules
from cds_service.rules.testing import TestFilePlan
from tests.rules.conftest import SAMPLE_RULE, minimal_rule
from tests.rules.testing.support import line_of


class SameSummary(Validator):
    """A cross-rule check: only finalize() knows every rule has been seen."""

    id = "same-summary"
    description = "Two rules show the same card summary."
    severity = "error"

    def __init__(self) -> None:
        self.seen: dict[str, list[CompiledRule]] = {}

    def validate(self, rule: CompiledRule) -> Iterator[RuleIssue]:
        self.seen.setdefault(rule.rule.card.summary, []).append(rule)
        return iter(())

    def finalize(self) -> list[RuleIssue]:
        # A list built when called: lint must have consumed every validate() before.
        return [
            self.rule_issue(rule, ("card", "summary"), f"same summary as {rules[0].id}")
            for rules in self.seen.values()
            for rule in rules[1:]
        ]


class CaseCount(Validator):
    id = "case-count"
    description = "Reports each test file (to show where its issues point)."

    def validate_tests(self, plan: TestFilePlan) -> Iterator[RuleIssue]:
        yield self.tests_issue(plan, ("now",), f"{len(plan.cases)} cases")


def test_finalize_sees_every_rule(empty_rules: Path) -> None:
    for rule_id in ("first", "second"):
        (empty_rules / "order-select" / f"{rule_id}.yaml").write_text(minimal_rule(rule_id))
    report = lint_rules(empty_rules, validators=(SameSummary,))
    second = empty_rules / "order-select" / "second.yaml"
    line = next(n for n, t in enumerate(second.read_text().splitlines(), 1) if "summary:" in t)
    assert [str(i) for i in report.errors] == [
        f"{second}:{line}:3: card.summary: same summary as first [second] (same-summary)"
    ]
    assert report.warnings == []  # only the validators given ran


def test_issues_in_test_files_point_into_them(rules_dir: Path) -> None:
    [issue] = lint_rules(rules_dir, validators=(CaseCount,)).issues
    tests = rules_dir / "order-select" / f"{SAMPLE_RULE}.test.yaml"
    assert (issue.path, issue.line, issue.col, issue.field) == (
        tests,
        line_of(tests, "now:"),
        1,
        "now",
    )
    assert (issue.message, issue.severity, issue.validator) == (
        "6 cases",
        "warning",
        "case-count",
    )


@pytest.mark.parametrize("attributes", [{"description": "d"}, {"id": "Bad_Id", "description": "d"}])
def test_a_validator_needs_a_kebab_case_id_and_a_description(attributes: dict[str, str]) -> None:
    with pytest.raises(TypeError, match="kebab-case `id` and a `description`"):
        type("Broken", (Validator,), attributes)
