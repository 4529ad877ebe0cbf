"""`rules lint`: load everything, plan every test file, run the enabled validators."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec

from cds_service.issues import RuleIssue, internal_error, sorted_issues
from cds_service.rules.lint.base import Validator
from cds_service.rules.lint.config import read_lint_config
from cds_service.rules.lint.registry import VALIDATORS
from cds_service.rules.ruleset import RuleSet, load_ruleset, rule_files
from cds_service.rules.testing.plan import plan_tests
from cds_service.rules.testing.runner import known_scores

__all__ = ["LintReport", "lint_rules"]

log = logging.getLogger(__name__)
P = ParamSpec("P")


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


def lint_rules(root: Path, *, validators: Sequence[type[Validator]] = VALIDATORS) -> LintReport:
    """Check everything under `root` without running tests.

    Load errors of rules, value sets and test files, problems of `lint.yaml`, then what the
    `validators` it enables find in the rules and test files that load (minus its exclusions).
    """
    ruleset = load_ruleset(root, known_scores())
    plans = plan_tests(root, ruleset)
    on_disk = [p.stem for p in rule_files(root)] if root.is_dir() else []
    config, config_issues = read_lint_config(root, [v.id for v in validators], on_disk)
    found: list[RuleIssue] = []
    for validator in (v() for v in validators if v.id in config.enabled):
        # Each call's issues are taken before the next call: finalize() sees everything.
        validator.begin(ruleset)
        for rule_id in sorted(ruleset.rules):
            rule = ruleset.rules[rule_id]
            found += _checked(validator, rule.path, validator.validate, rule)
        for plan in plans:
            found += _checked(validator, plan.path, validator.validate_tests, plan)
        found += _checked(validator, root, validator.finalize)
    kept = [i for i in found if not config.excludes(i)]
    issues = [*ruleset.issues, *(i for p in plans for i in p.issues), *config_issues, *kept]
    return LintReport(ruleset, sorted_issues(issues), len(on_disk))


def _checked(
    validator: Validator,
    path: Path,
    check: Callable[P, Iterable[RuleIssue]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> list[RuleIssue]:
    """What one validator call finds; an exception in it (a bug) is an error of `path` naming
    the validator, and the other calls still run."""
    try:
        return list(check(*args, **kwargs))
    except Exception as exc:
        log.error("validator %s failed on %s", validator.id, path, exc_info=exc)
        return [RuleIssue(path, 1, 1, "", internal_error(exc), validator=validator.id)]
