"""Is each rule tested, and do its tests show it both firing and staying silent?"""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.issues import RuleIssue
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.lint.base import Validator
from cds_service.rules.testing.model import TEST_SUFFIX
from cds_service.rules.testing.plan import TestFilePlan

__all__ = ["MissingFiringCase", "MissingSilentCase", "RuleWithoutTests"]


class RuleWithoutTests(Validator):
    """A rule that still runs (active or draft) needs `<rule-id>.test.yaml` beside it."""

    id = "rule-without-tests"
    description = "An active or draft rule has no test file (<rule-id>.test.yaml) beside it."

    def validate(self, rule: CompiledRule) -> Iterator[RuleIssue]:
        tests = rule.path.with_name(rule.id + TEST_SUFFIX)
        if rule.rule.status != "retired" and not tests.exists():
            yield self.rule_issue(rule, (), f"no test file '{tests.name}' beside this rule")


class MissingFiringCase(Validator):
    """Without a case that expects a card, the tests pass for a rule that never fires."""

    id = "missing-firing-case"
    description = "No case of a test file expects a card (shows the rule firing)."

    def validate_tests(self, plan: TestFilePlan) -> Iterator[RuleIssue]:
        if plan.model is None or plan.errors:
            return
        if not any(c.expect.cards or c.expect.status == "shadow" for c in plan.model.cases):
            yield self.tests_issue(
                plan, ("cases",), "no case expects a card: add one where the rule fires"
            )


class MissingSilentCase(Validator):
    """Without a case that expects silence, the tests pass for a rule that always fires."""

    id = "missing-silent-case"
    description = "No case of a test file expects no card (shows the rule staying silent)."

    def validate_tests(self, plan: TestFilePlan) -> Iterator[RuleIssue]:
        if plan.model is None or plan.errors:
            return
        if not any(
            not c.expect.cards and c.expect.status in (None, "silent") for c in plan.model.cases
        ):
            yield self.tests_issue(
                plan, ("cases",), "no case expects silence: add one where the rule must not fire"
            )
