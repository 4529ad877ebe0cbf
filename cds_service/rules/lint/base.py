"""The validator: one named lint check with a severity, in the manner of pySigma's validators.

Load errors (bad YAML, unknown keys, FHIRPath that does not compile, unknown names) keep a rule
from serving and are reported by the loader; they cannot be switched off. Validators report what
is worth an author's attention in rules that *do* load: a missing test file, a test file that never
shows the rule firing. Each has a kebab-case `id`, printed with every issue it reports
(`path:line:col: message [rule-id] (validator-id)`), by which `rules/lint.yaml` switches it off
or excludes rules from it.

A validator sees the loaded rule set (`begin`), each loaded rule (`validate`), each test file
(`validate_tests`), and then, once,
everything it gathered (`finalize`, for checks across rules). A fresh instance runs per lint run,
so it may keep state between the calls. Example::

    class DuplicateTitle(Validator):
        id = "duplicate-title"
        description = "Two rules share a title, so their cards read alike in reviews."

        def __init__(self) -> None:
            self.titles: dict[str, CompiledRule] = {}

        def validate(self, rule: CompiledRule) -> Iterator[RuleIssue]:
            first = self.titles.setdefault(rule.rule.title, rule)
            if first is not rule:
                yield self.rule_issue(rule, ("title",), f"same title as rule {first.id}")

Register it in `registry.VALIDATORS` and list it in rules/README.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from cds_service.issues import RuleIssue, Severity
from cds_service.rules.compiled import CompiledRule
from cds_service.rules.model import KEBAB
from cds_service.rules.ruleset import RuleSet
from cds_service.rules.testing.plan import TestFilePlan
from cds_service.yamlsource import Located, field_path

__all__ = ["Validator"]

Loc = tuple[str | int, ...]


class Validator:
    """Base class of lint checks: set `id` and `description`, override what you need."""

    id: ClassVar[str]
    description: ClassVar[str]
    severity: ClassVar[Severity] = "warning"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not KEBAB.match(getattr(cls, "id", "")) or not getattr(cls, "description", ""):
            raise TypeError(f"{cls.__name__} needs a kebab-case `id` and a `description`")

    def begin(self, ruleset: RuleSet) -> None:
        """Called first, with everything loaded (value sets, services): for checks that need
        more than the rules and tests they see."""

    def validate(self, rule: CompiledRule) -> Iterable[RuleIssue]:
        """Issues of one loaded rule."""
        return ()

    def validate_tests(self, plan: TestFilePlan) -> Iterable[RuleIssue]:
        """Issues of one test file (planned against the loaded rules)."""
        return ()

    def finalize(self) -> Iterable[RuleIssue]:
        """Issues found across everything seen: called once, after the other methods."""
        return ()

    def rule_issue(self, rule: CompiledRule, loc: Loc, message: str) -> RuleIssue:
        """An issue at `loc` (e.g. `("card", "summary")`) of a rule's file; `()`: the file."""
        return self._issue(rule.path, rule.source, loc, message, rule.id)

    def tests_issue(self, plan: TestFilePlan, loc: Loc, message: str) -> RuleIssue:
        """An issue at `loc` of a test file; `()`: the file."""
        return self._issue(plan.path, plan.located, loc, message, plan.rule_id)

    def _issue(
        self, path: Path, located: Located | None, loc: Loc, message: str, rule_id: str
    ) -> RuleIssue:
        line, col = located.position(loc) if located is not None and loc else (1, 1)
        field = field_path(loc)
        return RuleIssue(path, line, col, field, message, rule_id, self.severity, self.id)
