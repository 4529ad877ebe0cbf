"""Where rule files live: `rules/<hook>/<rule-id>.yaml`."""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.issues import RuleIssue
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.lint.base import Validator

__all__ = ["RuleOutsideHookDirectory"]


class RuleOutsideHookDirectory(Validator):
    """Rules are filed by hook, so an author finds every rule a hook call runs in one folder."""

    id = "rule-outside-hook-directory"
    description = "The rule file is not in the folder named after its hook (rules/<hook>/)."

    def validate(self, rule: CompiledRule) -> Iterator[RuleIssue]:
        folder, hook = rule.path.parent.name, rule.rule.hook
        if folder != hook:
            yield self.rule_issue(
                rule,
                ("hook",),
                f"the rule lives in '{folder}/' but its hook is '{hook}': keep rules in "
                "rules/<hook>/",
            )
