"""`rules lint`: every problem of every rule, value set and test file, without running tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cds_service.rules.issues import RuleIssue, sorted_issues
from cds_service.rules.ruleset import RuleSet, load_ruleset, rule_files
from cds_service.rules.testing.model import TEST_SUFFIX
from cds_service.rules.testing.plan import plan_tests
from cds_service.rules.testing.runner import known_scores

__all__ = ["LintReport", "lint_rules"]


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
    return LintReport(ruleset, sorted_issues(issues), len(rule_files(root)) if root.is_dir() else 0)
